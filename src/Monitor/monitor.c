/*
 * criruntime-monitor: what the shim becomes while its container runs and nothing else happens
 * (docs/shim-protocol.md, "The monitor"). The .NET supervisor execve()s this program from the
 * thread that is the container init's parent, so the pid (shim.pid), the subreaper flag and the
 * init's PR_SET_PDEATHSIG all stay with the process; a NativeAOT process cannot idle below
 * ~0.5 MB of private memory, this one idles in a few pages.
 *
 * Single-threaded, one poll(2) loop. It does, exactly as the .NET supervisor does them:
 *   - the CRI log of the container's stdout/stderr pipes (format and splitting of CriLog.cs);
 *   - the control ops that need no .NET code: state, kill, wait, stop (with its SIGKILL
 *     escalation), reopen-log;
 *   - exec (ExecSync) in a container without a user namespace of its own (below, "exec");
 *   - reaping orphans (it is the container's subreaper).
 * Everything else (exec in a user namespace, exec-stream, attach, resize, update, start, anything unknown or
 * malformed) and the container's exit are handed back: it execve()s `criruntime-shim supervise
 * --resume` with every descriptor it holds and every connection, parked or not, with the bytes
 * read from it but not yet answered; that .NET supervisor serves the request (or records the
 * exit, with the cgroup code that knows v1, v2 and hybrid) and execs this monitor again once idle.
 * The exited init is left a zombie for .NET to reap (waitid WNOWAIT), so its status is not lost.
 *
 * Test mode: `criruntime-monitor frame STREAM NANOS` reads stdin and writes the CRI records of
 * it to stdout, every record stamped NANOS (Unix time), to check the framing from unit tests.
 * `criruntime-monitor exec-answer STATUS TIMED_OUT OUT_LEN SAID STATE_JSON` writes the answer to an
 * exec so ended (stdin: its stdout then its stderr), to check it against .NET's protocol types.
 * `criruntime-monitor noop` exits 0 (the .NET supervisor spawns it to wake its reaper thread).
 *
 * Launcher: `criruntime-monitor launch SHIM ARGS…` is what the daemon runs at StartContainer to
 * start a shim (docs/shim-protocol.md, "Create"): it starts `SHIM supervise ARGS…` in a new
 * session with /dev/null stdio and a pipe on fd 3, copies the supervisor's one-line readiness
 * report ("ok SHIMPID PID PHASES…" or "error MESSAGE") to stdout and exits, leaving the shim to
 * the host's init (or subreaper). It does what `criruntime-shim create` does, without a second
 * .NET runtime start on the way.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE (16 * 1024) /* containerd's max_container_log_line_size */
#define MAX_PENDING (64 * 1024) /* a control client sending more without a newline is not ours */
#define MAX_CONNS 256

extern char **environ;

/* ---------- small helpers ---------- */

static const char *state_dir;
static char shim_log_path[PATH_MAX];

static void shim_log(const char *level, const char *fmt, ...)
{
	char msg[1024], line[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%07ldZ %s monitor: %s\n", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 100, level, msg);
	if (n < 0 || !shim_log_path[0])
		return;
	int fd = open(shim_log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (write(fd, line, (size_t)n > sizeof line - 1 ? sizeof line - 1 : (size_t)n) < 0) {
		/* diagnostics must never take the container down */
	}
	close(fd);
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);
	if (!q) {
		shim_log("error", "out of memory");
		abort();
	}
	return q;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes hex into a fresh buffer (*out, *len); 0 on success. */
static int unhex(const char *s, char **out, size_t *len)
{
	size_t n = strlen(s);
	if (n % 2)
		return -1;
	char *b = xrealloc(NULL, n / 2 + 1);
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			free(b);
			return -1;
		}
		b[i] = (char)(hi << 4 | lo);
	}
	*out = b;
	*len = n / 2;
	return 0;
}

static char *hex(const char *b, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	char *s = xrealloc(NULL, len * 2 + 1);
	for (size_t i = 0; i < len; i++) {
		s[2 * i] = digits[(unsigned char)b[i] >> 4];
		s[2 * i + 1] = digits[(unsigned char)b[i] & 15];
	}
	s[len * 2] = 0;
	return s;
}

/* ---------- the CRI log (CriLog.cs: LogFramer + CriLogWriter) ---------- */

/* Go's time.RFC3339Nano in UTC: nanoseconds with trailing zeros (and a bare dot) dropped. */
static size_t timestamp(char *out, size_t cap, long long sec, long nsec)
{
	time_t t = (time_t)sec;
	struct tm tm;
	gmtime_r(&t, &tm);
	int n = snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (nsec > 0) {
		char frac[24];
		snprintf(frac, sizeof frac, "%09ld", nsec);
		int len = 9;
		while (len > 0 && frac[len - 1] == '0')
			len--;
		n += snprintf(out + n, cap - (size_t)n, ".%.*s", len, frac);
	}
	n += snprintf(out + n, cap - (size_t)n, "Z");
	return (size_t)n;
}

static long long fixed_clock_ns = -1; /* test mode */
static int log_fd = -1;
static const char *log_path;
static char record[MAX_LINE + 128];

/* One record, one write(2): the two streams never interleave inside a record. */
static void emit(const char *stream, int partial, const char *content, size_t len)
{
	struct timespec ts;
	if (fixed_clock_ns >= 0) {
		ts.tv_sec = fixed_clock_ns / 1000000000LL;
		ts.tv_nsec = fixed_clock_ns % 1000000000LL;
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
	}
	size_t n = timestamp(record, 64, ts.tv_sec, ts.tv_nsec);
	n += (size_t)sprintf(record + n, " %s %c ", stream, partial ? 'P' : 'F');
	memcpy(record + n, content, len);
	n += len;
	record[n++] = '\n';
	if (write_all(log_fd, record, n) < 0)
		shim_log("error", "log %s: %s", log_path, strerror(errno));
}

struct stream {
	const char *name;
	int fd;                  /* the read end of the container's pipe; -1 once at end of file */
	char pending[MAX_LINE + 1]; /* a line not yet ended: at most MAX_LINE bytes kept */
	size_t len;
};

static void frame_feed(struct stream *s, const char *data, size_t n)
{
	while (n > 0) {
		const char *nl = memchr(data, '\n', n);
		size_t chunk = nl ? (size_t)(nl - data) : n;
		/* cut into MAX_LINE records as the line grows past it */
		while (chunk > 0) {
			size_t room = MAX_LINE + 1 - s->len, take = chunk < room ? chunk : room;
			memcpy(s->pending + s->len, data, take);
			s->len += take;
			data += take;
			n -= take;
			chunk -= take;
			if (s->len > MAX_LINE) {
				emit(s->name, 1, s->pending, MAX_LINE);
				memmove(s->pending, s->pending + MAX_LINE, s->len - MAX_LINE);
				s->len -= MAX_LINE;
			}
		}
		if (!nl)
			return;
		size_t len = s->len;
		if (len > 0 && s->pending[len - 1] == '\r')
			len--;
		emit(s->name, 0, s->pending, len);
		s->len = 0;
		data++; /* the newline */
		n--;
	}
}

static void frame_finish(struct stream *s)
{
	if (s->len > 0)
		emit(s->name, 1, s->pending, s->len);
	s->len = 0;
}

static int open_log(const char *path)
{
	/* as CriLogWriter: the directory is made if missing */
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", path);
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		mkdir(dir, 0755);
		*p = '/';
	}
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

/* ---------- requests: a small reader of the top-level keys of one JSON object ---------- */

struct request {
	char op[32];
	int has_signal;
	long signal;
	int has_timeout;
	double timeout;
};

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	return p;
}

/* Past one JSON string starting at p ('"'); NULL if unterminated. */
static const char *skip_string(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/* Past one JSON value (any kind); NULL if malformed. */
static const char *skip_value(const char *p, const char *end)
{
	if (p >= end)
		return NULL;
	if (*p == '"')
		return skip_string(p, end);
	if (*p == '{' || *p == '[') {
		int depth = 0;
		for (; p < end; p++) {
			if (*p == '"') {
				p = skip_string(p, end);
				if (!p)
					return NULL;
				p--;
			} else if (*p == '{' || *p == '[') {
				depth++;
			} else if (*p == '}' || *p == ']') {
				if (--depth == 0)
					return p + 1;
			}
		}
		return NULL;
	}
	while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ')
		p++;
	return p;
}

/* 0 when the line is an object this monitor understands the keys it needs of; -1 otherwise
 * (.NET then answers it, with its own parse error). Keys are the protocol's camelCase names,
 * matched exactly as System.Text.Json does with the protocol's options. */
static int parse_request(const char *line, size_t len, struct request *r)
{
	const char *p = line, *end = line + len;
	memset(r, 0, sizeof *r);
	p = skip_ws(p, end);
	if (p >= end || *p != '{')
		return -1;
	p = skip_ws(p + 1, end);
	if (p < end && *p == '}')
		return -1; /* no op: let .NET say what is wrong */
	while (p < end) {
		if (*p != '"')
			return -1;
		const char *kend = skip_string(p, end);
		if (!kend)
			return -1;
		const char *key = p + 1;
		size_t klen = (size_t)(kend - 1 - key);
		p = skip_ws(kend, end);
		if (p >= end || *p != ':')
			return -1;
		p = skip_ws(p + 1, end);
		const char *vend = skip_value(p, end);
		if (!vend)
			return -1;
		if (klen == 2 && !memcmp(key, "op", 2)) {
			if (*p != '"' || memchr(p + 1, '\\', (size_t)(vend - p - 1)) || (size_t)(vend - p - 2) >= sizeof r->op)
				return -1;
			memcpy(r->op, p + 1, (size_t)(vend - p - 2));
			r->op[vend - p - 2] = 0;
		} else if (klen == 6 && !memcmp(key, "signal", 6)) {
			if (strncmp(p, "null", 4) != 0) {
				char *e;
				r->signal = strtol(p, &e, 10);
				if (e != vend)
					return -1;
				r->has_signal = 1;
			}
		} else if (klen == 7 && !memcmp(key, "timeout", 7)) {
			if (strncmp(p, "null", 4) != 0) {
				char *e;
				r->timeout = strtod(p, &e);
				if (e != vend)
					return -1;
				r->has_timeout = 1;
			}
		}
		p = skip_ws(vend, end);
		if (p < end && *p == ',') {
			p = skip_ws(p + 1, end);
			continue;
		}
		if (p < end && *p == '}') {
			p = skip_ws(p + 1, end);
			return p == end && r->op[0] ? 0 : -1;
		}
		return -1;
	}
	return -1;
}

/* ---------- connections ---------- */

enum park { IDLE, WAIT, TIMED_WAIT, STOP, EXEC };

struct conn {
	int fd;
	enum park park;
	long long deadline; /* TIMED_WAIT: when to answer "timeout"; STOP: when to SIGKILL (0: done) */
	char *buf;
	size_t len;
};

static struct conn conns[MAX_CONNS];
static int nconns;

static const char *id, *bundle, *shim_path;
static int init_pid, pidfd = -1, listen_fd = -1, stdin_fd = -1, sig_fd = -1;
static struct stream out = {.name = "stdout", .fd = -1}, err = {.name = "stderr", .fd = -1};
static char *state_json; /* state.json as the supervisor wrote it: the state while running */

static void load_state(void)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/state.json", state_dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		shim_log("error", "%s: %s", path, strerror(errno));
		exit(1);
	}
	size_t len = 0, cap = 1024;
	char *b = xrealloc(NULL, cap);
	ssize_t n;
	while ((n = read(fd, b + len, cap - len - 1)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			shim_log("error", "%s: %s", path, strerror(errno));
			exit(1);
		}
		len += (size_t)n;
		if (len + 1 == cap)
			b = xrealloc(b, cap *= 2);
	}
	close(fd);
	while (len > 0 && (b[len - 1] == '\n' || b[len - 1] == ' '))
		len--;
	b[len] = 0;
	state_json = b;
}

/* {"ok":true,"state":…} / {"ok":false,"error":"…","state":…}: as ShimResponse serializes. */
static int answer(int fd, int ok, const char *error)
{
	size_t cap = strlen(state_json) + (error ? strlen(error) : 0) + 64;
	char *b = xrealloc(NULL, cap);
	int n = ok ? snprintf(b, cap, "{\"ok\":true,\"state\":%s}\n", state_json)
		   : snprintf(b, cap, "{\"ok\":false,\"error\":\"%s\",\"state\":%s}\n", error, state_json);
	int rc = send(fd, b, (size_t)n, MSG_NOSIGNAL) == n ? 0 : -1;
	free(b);
	return rc;
}

static void drop(int i)
{
	close(conns[i].fd);
	free(conns[i].buf);
	conns[i] = conns[--nconns];
}

static void signal_init(int sig)
{
	if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 && errno != ESRCH)
		shim_log("warn", "signal %d to pid %d: %s", sig, init_pid, strerror(errno));
}

/* ---------- exec (ExecSync) ---------- */

/* An `exec` is served here, not handed back, when the container has no user namespace of its
 * own (one that has goes through .NET's criruntime-nsexec path): a child is forked into the
 * init's pid namespace (this process joins it for the fork only: setns(CLONE_NEWPID) sets the
 * namespace of its next children, and it goes back to its own at once), joins the init's ipc,
 * uts and net namespaces and execs `criruntime-shim exec-init --bundle …`, which reads the request
 * on fd 3, joins the container's cgroup, cgroup and mount namespaces, takes the container
 * process's identity (user, capabilities, no_new_privs, seccomp) and execs the command, exactly
 * as when the .NET supervisor spawns it. This loop collects its output (at most EXEC_MAX_OUTPUT
 * bytes per stream, the rest read and dropped), SIGKILLs it at the timeout, reaps it and answers
 * as the supervisor does. One NativeAOT start per exec instead of two (the resumed supervisor and
 * exec-init), and no hand-back nor re-exec of this monitor. */

#define EXEC_MAX_OUTPUT (16 * 1024 * 1024) /* ExecResult.MaxOutput */

/* One read buffer for the container's output and the execs' (single-threaded): the monitor now
 * outlives execs, and a stack buffer's pages would stay resident in every idle shim. */
static char io_buf[16 * 1024];
#define MAX_EXECS 64

struct buf {
	char *b;
	size_t len, cap;
};

struct exec {
	int conn_fd;      /* the connection answered at the end; it stays parked (EXEC) until then */
	pid_t pid;        /* exec-init, then the command (same process) */
	int out_fd, err_fd, sync_fd; /* -1 once at end of file */
	struct buf out, err, said;   /* said: what exec-init wrote on fd 3 ("error …"), if anything */
	int exited, status, timed_out;
	long long deadline; /* 0: none */
};

static struct exec execs[MAX_EXECS];
static int nexecs;
static int own_pidns = -1, exec_userns = -1; /* exec_userns: 1 when the container has its own user namespace */

static void buf_add(struct buf *b, const char *data, size_t n, size_t limit)
{
	if (b->len >= limit)
		return;
	if (n > limit - b->len)
		n = limit - b->len;
	if (b->len + n > b->cap) {
		b->cap = b->cap ? b->cap : 4096;
		while (b->cap < b->len + n)
			b->cap *= 2;
		b->b = xrealloc(b->b, b->cap);
	}
	memcpy(b->b + b->len, data, n);
	b->len += n;
}

static void buf_str(struct buf *b, const char *s) { buf_add(b, s, strlen(s), (size_t)-1); }

static void buf_base64(struct buf *b, const char *data, size_t n)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = (const unsigned char *)data;
	char q[4];
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
		q[0] = alphabet[v >> 18 & 63];
		q[1] = alphabet[v >> 12 & 63];
		q[2] = i + 1 < n ? alphabet[v >> 6 & 63] : '=';
		q[3] = i + 2 < n ? alphabet[v & 63] : '=';
		buf_add(b, q, 4, (size_t)-1);
	}
}

/* A JSON string of arbitrary bytes, as System.Text.Json writes the error text (invalid UTF-8 is
 * the reader's problem: .NET replaces it). */
static void buf_json_string(struct buf *b, const char *s, size_t n)
{
	buf_add(b, "\"", 1, (size_t)-1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char e[8];
		if (c == '"' || c == '\\') {
			e[0] = '\\';
			e[1] = (char)c;
			buf_add(b, e, 2, (size_t)-1);
		} else if (c < 0x20) {
			snprintf(e, sizeof e, "\\u%04x", c);
			buf_add(b, e, 6, (size_t)-1);
		} else {
			buf_add(b, (const char *)&c, 1, (size_t)-1);
		}
	}
	buf_add(b, "\"", 1, (size_t)-1);
}

/* The answer to a finished exec: ShimResponse with ExecResult, or the error exec-init gave. */
static char *exec_answer(const struct exec *x, size_t *len)
{
	struct buf b = {0};
	if (x->said.len > 0) {
		const char *why = x->said.b;
		size_t n = x->said.len;
		const char *nl = memchr(why, '\n', n); /* its first line, as SyncChannel.Receive */
		if (nl)
			n = (size_t)(nl - why);
		if (n >= 6 && !memcmp(why, "error ", 6))
			why += 6, n -= 6;
		buf_str(&b, "{\"ok\":false,\"error\":");
		buf_json_string(&b, why, n);
	} else {
		int sig = WIFSIGNALED(x->status) ? WTERMSIG(x->status) : 0;
		int code = sig ? 128 + sig : WEXITSTATUS(x->status);
		char num[64];
		snprintf(num, sizeof num, "{\"ok\":true,\"exec\":{\"exitCode\":%d", code);
		buf_str(&b, num);
		if (sig) {
			snprintf(num, sizeof num, ",\"signal\":%d", sig);
			buf_str(&b, num);
		}
		buf_str(&b, ",\"stdout\":\"");
		buf_base64(&b, x->out.b, x->out.len);
		buf_str(&b, "\",\"stderr\":\"");
		buf_base64(&b, x->err.b, x->err.len);
		buf_str(&b, x->timed_out ? "\",\"timedOut\":true}" : "\",\"timedOut\":false}");
	}
	buf_str(&b, ",\"state\":");
	buf_str(&b, state_json);
	buf_str(&b, "}\n");
	*len = b.len;
	return b.b;
}

/* Whether the container has a user namespace of its own (its init's is not this process's). */
static int container_userns(void)
{
	if (exec_userns < 0) {
		char path[64];
		struct stat mine, its;
		snprintf(path, sizeof path, "/proc/%d/ns/user", init_pid);
		if (stat("/proc/self/ns/user", &mine) < 0 || stat(path, &its) < 0)
			return 1; /* cannot tell: .NET decides */
		exec_userns = mine.st_ino != its.st_ino || mine.st_dev != its.st_dev;
	}
	return exec_userns;
}

/* The environment for exec-init: this one without the supervisor's runtime settings
 * (SupervisorTuning.cs: the short-lived processes keep the defaults). */
static char **child_environ(void)
{
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = xrealloc(NULL, (n + 1) * sizeof *env);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "DOTNET_GCGen0MaxBudget=", 23) && strncmp(environ[i], "MALLOC_ARENA_MAX=", 17))
			env[k++] = environ[i];
	env[k] = NULL;
	return env;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Starts the exec of request `line` for the connection `conn_fd`; NULL and errno when it could
 * not be started (the caller hands the request back to .NET, which then says why). */
static struct exec *exec_start(int conn_fd, const char *line, size_t len, const struct request *r)
{
	if (nexecs >= MAX_EXECS) {
		errno = EAGAIN;
		return NULL;
	}
	int outp[2] = {-1, -1}, errp[2] = {-1, -1}, sync[2] = {-1, -1}, pidns = -1, ns[3] = {-1, -1, -1};
	static const char *const names[] = {"ipc", "uts", "net"};
	char path[64];
	if (own_pidns < 0 && (own_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC)) < 0)
		return NULL;
	snprintf(path, sizeof path, "/proc/%d/ns/pid", init_pid);
	if ((pidns = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		goto fail;
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof path, "/proc/%d/ns/%s", init_pid, names[i]);
		if ((ns[i] = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			goto fail;
	}
	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sync) < 0)
		goto fail;
	char **env = child_environ();
	char pid_arg[16];
	snprintf(pid_arg, sizeof pid_arg, "%d", init_pid);
	char *argv[] = {"criruntime-shim", "exec-init", "--pid", pid_arg, "--bundle", (char *)bundle, "--id", (char *)id, NULL};
	if (setns(pidns, CLONE_NEWPID) < 0) {
		free(env);
		goto fail;
	}
	pid_t pid = fork();
	int fork_errno = errno;
	if (pid == 0) {
		/* The child: no allocation, async-signal-safe calls only until execve. */
		for (int i = 0; i < 3; i++)
			if (setns(ns[i], 0) < 0)
				_exit(126);
		sigset_t none;
		sigemptyset(&none);
		signal(SIGPIPE, SIG_DFL);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setsid();
		int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(outp[1], 1) < 0 || dup2(errp[1], 2) < 0 || dup2(sync[1], 3) < 0)
			_exit(126);
		execve(shim_path, argv, env);
		_exit(127);
	}
	if (setns(own_pidns, CLONE_NEWPID) < 0) {
		/* Every later child would be born in the container: this monitor cannot go on. */
		shim_log("error", "exec: back to the shim's pid namespace: %s", strerror(errno));
		abort();
	}
	free(env);
	if (pid < 0) {
		errno = fork_errno;
		goto fail;
	}
	close(pidns);
	for (int i = 0; i < 3; i++)
		close(ns[i]);
	close(outp[1]);
	close(errp[1]);
	close(sync[1]);
	struct exec *x = &execs[nexecs++];
	*x = (struct exec){.conn_fd = conn_fd, .pid = pid, .out_fd = outp[0], .err_fd = errp[0], .sync_fd = sync[0]};
	if (r->has_timeout && r->timeout > 0)
		x->deadline = now_ms() + (long long)(r->timeout * 1000);
	/* exec-init reads the request (args, env, cwd) from fd 3; a line, as on the control socket */
	if (write_all(x->sync_fd, line, len) < 0 || write_all(x->sync_fd, "\n", 1) < 0)
		shim_log("warn", "exec: request to exec-init %d: %s", pid, strerror(errno)); /* it died: its exit says so */
	fcntl(x->out_fd, F_SETFL, O_NONBLOCK);
	fcntl(x->err_fd, F_SETFL, O_NONBLOCK);
	fcntl(x->sync_fd, F_SETFL, O_NONBLOCK);
	return x;
fail:;
	int e = errno;
	close_fd(&pidns);
	for (int i = 0; i < 3; i++)
		close_fd(&ns[i]);
	close_fd(&outp[0]), close_fd(&outp[1]), close_fd(&errp[0]), close_fd(&errp[1]), close_fd(&sync[0]), close_fd(&sync[1]);
	errno = e;
	return NULL;
}

/* Reads what is there of one of an exec's descriptors; at end of file (or error) closes it.
 * Straight into the exec's own buffer (freed with it), up to `limit`; past it into io_buf, dropped. */
static void exec_read(int *fd, struct buf *into, size_t limit)
{
	for (;;) {
		char *to = io_buf;
		size_t room = sizeof io_buf;
		if (into->len < limit) {
			if (into->cap - into->len < 4096) {
				into->cap = into->cap ? into->cap * 2 : 4096;
				into->b = xrealloc(into->b, into->cap);
			}
			to = into->b + into->len;
			room = into->cap - into->len;
			if (room > limit - into->len)
				room = limit - into->len;
		}
		ssize_t n = read(*fd, to, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			close_fd(fd);
			return;
		}
		if (to != io_buf)
			into->len += (size_t)n;
	}
}

/* Whether `pid` is one of the execs (then its status is recorded: the caller has reaped it). */
static int exec_reaped(pid_t pid, int status)
{
	for (int i = 0; i < nexecs; i++)
		if (execs[i].pid == pid && !execs[i].exited) {
			execs[i].exited = 1;
			execs[i].status = status;
			return 1;
		}
	return 0;
}

static void exec_free(struct exec *x)
{
	int big = x->out.cap + x->err.cap > 64 * 1024;
	free(x->out.b);
	free(x->err.b);
	free(x->said.b);
	if (big)
		malloc_trim(0); /* the idle shim goes back to its few pages (docs/shim-protocol.md, "Footprint") */
	close_fd(&x->out_fd);
	close_fd(&x->err_fd);
	close_fd(&x->sync_fd);
}

/* ---------- handing back to .NET ---------- */

static void cloexec(int fd, int on)
{
	if (fd >= 0)
		fcntl(fd, F_SETFD, on ? FD_CLOEXEC : 0);
}

static char *fmt(const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	char *s;
	if (vasprintf(&s, f, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

/* execve()s the .NET supervisor in resume mode with everything this monitor holds. Returns only
 * if the exec failed (why is in shim.log). */
static void hand_back(const char *why)
{
	/* conns: FD:HEX (the bytes read and not answered); waiters: KIND:FD[:MS left] */
	size_t clen = 1, wlen = 1;
	char *cl = xrealloc(NULL, 1), *wl = xrealloc(NULL, 1);
	cl[0] = wl[0] = 0;
	long long now = now_ms();
	for (int i = 0; i < nconns; i++) {
		struct conn *c = &conns[i];
		char *item;
		if (c->park == IDLE) {
			char *h = hex(c->buf ? c->buf : "", c->len);
			item = fmt("%s%d:%s", clen > 1 ? "," : "", c->fd, h);
			free(h);
			cl = xrealloc(cl, clen + strlen(item));
			strcat(cl, item);
			clen += strlen(item);
		} else {
			long long left = c->deadline > now ? c->deadline - now : 0;
			if (c->park == WAIT)
				item = fmt("%sW:%d", wlen > 1 ? "," : "", c->fd);
			else
				item = fmt("%s%c:%d:%lld", wlen > 1 ? "," : "", c->park == STOP ? 'S' : 'T', c->fd,
					   c->park == STOP && c->deadline == 0 ? 0 : left);
			wl = xrealloc(wl, wlen + strlen(item));
			strcat(wl, item);
			wlen += strlen(item);
		}
		free(item);
		cloexec(c->fd, 0);
	}
	int fds[] = {pidfd, listen_fd, out.fd, err.fd, stdin_fd, log_fd};
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
		cloexec(fds[i], 0);
	char *oh = hex(out.pending, out.len), *eh = hex(err.pending, err.len);
	char *argv[] = {
		"criruntime-shim", "supervise", "--resume", (char *)why,
		"--id", (char *)id, "--bundle", (char *)bundle, "--state", (char *)state_dir, "--log", (char *)log_path,
		"--pid", fmt("%d", init_pid), "--pidfd", fmt("%d", pidfd), "--listen", fmt("%d", listen_fd),
		"--out", fmt("%d", out.fd), "--err", fmt("%d", err.fd), "--stdin", fmt("%d", stdin_fd),
		"--logfd", fmt("%d", log_fd), "--out-partial", oh, "--err-partial", eh,
		"--conns", cl, "--waiters", wl, NULL,
	};
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	execve(shim_path, argv, environ);
	int e = errno;
	shim_log("error", "exec %s (%s): %s", shim_path, why, strerror(e));
	/* stay the monitor: take the descriptors back */
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
		cloexec(fds[i], 1);
	for (int i = 0; i < nconns; i++)
		cloexec(conns[i].fd, 1);
	free(cl);
	free(wl);
	free(oh);
	free(eh);
	errno = e;
}

/* ---------- the loop ---------- */

/* Answers what this monitor can answer of a connection's complete lines; returns 1 when a line
 * needs .NET (left unconsumed at the head of the buffer), 0 otherwise; -1: drop the connection. */
static int serve(int i)
{
	struct conn *c = &conns[i];
	char *nl;
	while (c->park == IDLE && (nl = memchr(c->buf, '\n', c->len))) {
		size_t len = (size_t)(nl - c->buf);
		struct request r;
		if (parse_request(c->buf, len, &r) < 0)
			return 1;
		int rc = 0;
		if (!strcmp(r.op, "state")) {
			rc = answer(c->fd, 1, NULL);
		} else if (!strcmp(r.op, "kill")) {
			signal_init(r.has_signal ? (int)r.signal : SIGKILL);
			rc = answer(c->fd, 1, NULL);
		} else if (!strcmp(r.op, "wait")) {
			if (!r.has_timeout) {
				c->park = WAIT;
			} else {
				c->park = TIMED_WAIT;
				c->deadline = now_ms() + (long long)(r.timeout * 1000);
			}
		} else if (!strcmp(r.op, "stop")) {
			double t = r.has_timeout ? r.timeout : 10; /* ShimRequest.DefaultStopTimeout */
			c->park = STOP;
			if (t > 0) {
				signal_init(r.has_signal ? (int)r.signal : SIGTERM);
				c->deadline = now_ms() + (long long)(t * 1000);
			} else {
				signal_init(SIGKILL);
				c->deadline = 0;
			}
		} else if (!strcmp(r.op, "exec") && !container_userns()) {
			if (!exec_start(c->fd, c->buf, len, &r)) {
				shim_log("warn", "exec: %s; handed to .NET", strerror(errno));
				return 1;
			}
			c->park = EXEC;
		} else if (!strcmp(r.op, "reopen-log")) {
			int fd = open_log(log_path);
			if (fd < 0) {
				char msg[PATH_MAX + 64];
				snprintf(msg, sizeof msg, "open %s: %s", log_path, strerror(errno));
				shim_log("error", "reopen-log: %s", msg);
				return 1; /* .NET says why, in its words */
			}
			dup3(fd, log_fd, O_CLOEXEC); /* same number: nothing else to update */
			close(fd);
			rc = answer(c->fd, 1, NULL);
		} else {
			return 1;
		}
		memmove(c->buf, nl + 1, c->len - len - 1);
		c->len -= len + 1;
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* The init has exited (a zombie, left for .NET to reap) when waitid peeks it; other children
 * (orphans of the container reparented to us, the subreaper) are reaped here. */
static int init_exited(void)
{
	for (;;) {
		siginfo_t si;
		memset(&si, 0, sizeof si);
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
			return errno == ECHILD;
		if (si.si_pid == 0)
			return 0;
		if (si.si_pid == init_pid)
			return 1;
		int status = 0;
		if (waitpid(si.si_pid, &status, 0) == si.si_pid)
			exec_reaped(si.si_pid, status);
	}
}

static int pump(struct stream *s)
{
	char *buf = io_buf;
	ssize_t n = read(s->fd, buf, sizeof io_buf);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0) {
		if (n < 0)
			shim_log("error", "%s: %s", s->name, strerror(errno));
		frame_finish(s);
		close(s->fd);
		s->fd = -1;
		return 0;
	}
	frame_feed(s, buf, (size_t)n);
	return 0;
}

/* Hands the request at the head of connection i back to .NET; if that exec failed, the request
 * gets an answer that says so and the rest carries on. */
static void hand_back_request(int i)
{
	hand_back("request");
	struct conn *c = &conns[i];
	char msg[256];
	snprintf(msg, sizeof msg, "the shim cannot serve this request: exec %s: %s", shim_path, strerror(errno));
	char *nl = memchr(c->buf, '\n', c->len);
	if (nl) {
		size_t len = (size_t)(nl - c->buf);
		memmove(c->buf, nl + 1, c->len - len - 1);
		c->len -= len + 1;
	}
	if (answer(c->fd, 0, msg) < 0)
		drop(i);
}

/* Answers the execs that are over (exited, output and fd 3 at end of file) and forgets them.
 * Once the init has exited, what is still running of an exec is killed, and its output is not
 * waited for past its exit (in a pod's shared pid namespace a process it left in the background
 * could hold the pipes until .NET kills the container's cgroup). */
static void exec_finish(int init_gone)
{
	for (int i = nexecs - 1; i >= 0; i--) {
		struct exec *x = &execs[i];
		if (init_gone) {
			if (!x->exited) {
				kill(x->pid, SIGKILL); /* not reaped yet: the pid is still ours */
				int status;
				if (waitpid(x->pid, &status, WNOHANG) == x->pid)
					x->exited = 1, x->status = status;
			}
			if (x->exited) {
				if (x->out_fd >= 0)
					exec_read(&x->out_fd, &x->out, EXEC_MAX_OUTPUT);
				if (x->err_fd >= 0)
					exec_read(&x->err_fd, &x->err, EXEC_MAX_OUTPUT);
				if (x->sync_fd >= 0)
					exec_read(&x->sync_fd, &x->said, 4096);
				close_fd(&x->out_fd), close_fd(&x->err_fd), close_fd(&x->sync_fd);
			}
		}
		if (!x->exited || x->out_fd >= 0 || x->err_fd >= 0 || x->sync_fd >= 0)
			continue;
		for (int k = 0; k < nconns; k++) {
			if (conns[k].fd != x->conn_fd || conns[k].park != EXEC)
				continue;
			size_t len;
			char *a = exec_answer(x, &len);
			conns[k].park = IDLE;
			int rc = send(conns[k].fd, a, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
			free(a);
			if (rc < 0 || serve(k) < 0)
				drop(k);
			break;
		}
		exec_free(x);
		execs[i] = execs[--nexecs];
	}
}

static void run(void)
{
	struct pollfd p[4 + MAX_CONNS + 3 * MAX_EXECS];
	int idx[MAX_CONNS];
	for (;;) {
		if (init_exited()) {
			if (nexecs > 0)
				exec_finish(1);
			if (nexecs == 0) {
				hand_back("exit");
				exit(1); /* no one can record the exit: the daemon records 255 for a dead shim */
			}
		}
		/* A request that needs .NET waits for the execs in flight: their answers are this
		 * process's to give. */
		if (nexecs == 0) {
			int want_net = -1;
			for (int i = 0; i < nconns && want_net < 0; i++)
				if (conns[i].park == IDLE && conns[i].len && memchr(conns[i].buf, '\n', conns[i].len))
					want_net = i;
			if (want_net >= 0) {
				hand_back_request(want_net);
				continue;
			}
		}
		int n = 0;
		p[n++] = (struct pollfd){.fd = sig_fd, .events = POLLIN};
		p[n++] = (struct pollfd){.fd = out.fd, .events = POLLIN};
		p[n++] = (struct pollfd){.fd = err.fd, .events = POLLIN};
		p[n++] = (struct pollfd){.fd = nconns < MAX_CONNS ? listen_fd : -1, .events = POLLIN};
		long long next = -1, now = now_ms();
		int nidle = 0;
		for (int i = 0; i < nconns; i++) {
			if (conns[i].park == IDLE) {
				idx[nidle++] = i;
				p[n++] = (struct pollfd){.fd = conns[i].fd, .events = POLLIN};
			} else if (conns[i].deadline > 0 && (next < 0 || conns[i].deadline < next)) {
				next = conns[i].deadline;
			}
		}
		int first_exec = n;
		for (int i = 0; i < nexecs; i++) {
			p[n++] = (struct pollfd){.fd = execs[i].out_fd, .events = POLLIN};
			p[n++] = (struct pollfd){.fd = execs[i].err_fd, .events = POLLIN};
			p[n++] = (struct pollfd){.fd = execs[i].sync_fd, .events = POLLIN};
			if (execs[i].deadline > 0 && (next < 0 || execs[i].deadline < next))
				next = execs[i].deadline;
		}
		int polled_execs = nexecs;
		int timeout = next < 0 ? -1 : next <= now ? 0 : (int)(next - now > INT_MAX ? INT_MAX : next - now);
		int ready = poll(p, (nfds_t)n, timeout);
		if (ready < 0) {
			if (errno == EINTR)
				continue;
			shim_log("error", "poll: %s", strerror(errno));
			exit(1);
		}
		if (p[0].revents) {
			struct signalfd_siginfo si;
			while (read(sig_fd, &si, sizeof si) > 0) {
			}
		}
		if (p[1].revents)
			pump(&out);
		if (p[2].revents)
			pump(&err);
		/* the execs' output, and their deadlines */
		now = now_ms();
		for (int i = 0; i < polled_execs; i++) {
			struct exec *x = &execs[i];
			struct pollfd *q = &p[first_exec + 3 * i];
			if (q[0].revents && x->out_fd >= 0)
				exec_read(&x->out_fd, &x->out, EXEC_MAX_OUTPUT);
			if (q[1].revents && x->err_fd >= 0)
				exec_read(&x->err_fd, &x->err, EXEC_MAX_OUTPUT);
			if (q[2].revents && x->sync_fd >= 0)
				exec_read(&x->sync_fd, &x->said, 4096);
			if (x->deadline > 0 && x->deadline <= now) {
				x->deadline = 0;
				if (!x->exited) {
					x->timed_out = 1;
					kill(x->pid, SIGKILL); /* not reaped yet: the pid is still ours */
				}
			}
		}
		/* deadlines of parked requests */
		for (int i = nconns - 1; i >= 0; i--) {
			struct conn *c = &conns[i];
			if (c->park == TIMED_WAIT && c->deadline <= now) {
				c->park = IDLE;
				if (answer(c->fd, 0, "timeout") < 0 || serve(i) < 0)
					drop(i);
			} else if (c->park == STOP && c->deadline > 0 && c->deadline <= now) {
				signal_init(SIGKILL);
				c->deadline = 0;
			}
		}
		/* idle connections, newest first (drop() moves the last one into the hole) */
		int want_net = -1;
		for (int k = nidle - 1; k >= 0; k--) {
			struct pollfd *q = &p[4 + k];
			int i = idx[k];
			if (!q->revents || i >= nconns || conns[i].fd != q->fd)
				continue;
			struct conn *c = &conns[i];
			char buf[4096];
			ssize_t got = read(c->fd, buf, sizeof buf);
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0 || c->len + (size_t)got > MAX_PENDING) {
				drop(i);
				continue;
			}
			c->buf = xrealloc(c->buf, c->len + (size_t)got);
			memcpy(c->buf + c->len, buf, (size_t)got);
			c->len += (size_t)got;
			int rc = serve(i);
			if (rc < 0)
				drop(i);
			else if (rc > 0)
				want_net = i;
		}
		if (p[3].revents & POLLIN) {
			int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0) {
				conns[nconns++] = (struct conn){.fd = fd, .park = IDLE};
			}
		}
		/* init_exited() (the loop's top) reaps the execs that ended */
		init_exited();
		exec_finish(0);
		if (want_net >= 0 && nexecs == 0)
			hand_back_request(want_net);
	}
}

/* ---------- arguments ---------- */

static const char *opt(int argc, char **argv, const char *name)
{
	for (int i = 1; i + 1 < argc; i++)
		if (argv[i][0] == '-' && argv[i][1] == '-' && !strcmp(argv[i] + 2, name))
			return argv[i + 1];
	return NULL;
}

static const char *need(int argc, char **argv, const char *name)
{
	const char *v = opt(argc, argv, name);
	if (!v) {
		fprintf(stderr, "criruntime-monitor: --%s is required\n", name);
		exit(2);
	}
	return v;
}

static int fd_opt(int argc, char **argv, const char *name)
{
	const char *v = opt(argc, argv, name);
	return v ? atoi(v) : -1;
}

static void add_partial(struct stream *s, const char *hexs)
{
	char *b;
	size_t len;
	if (!hexs || !*hexs || unhex(hexs, &b, &len) < 0)
		return;
	if (len > MAX_LINE)
		len = MAX_LINE;
	memcpy(s->pending, b, len);
	s->len = len;
	free(b);
}

/* --conns FD:HEX,… and --waiters W:FD | T:FD:MS | S:FD:MS,… (as hand_back writes them). */
static void add_conns(const char *list, const char *waiters)
{
	long long now = now_ms();
	char *copy = strdup(list ? list : ""), *save, *item;
	for (item = strtok_r(copy, ",", &save); item && nconns < MAX_CONNS; item = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(item, ':');
		struct conn c = {.fd = atoi(item), .park = IDLE};
		if (colon && colon[1] && unhex(colon + 1, &c.buf, &c.len) < 0)
			c.buf = NULL, c.len = 0;
		cloexec(c.fd, 1);
		conns[nconns++] = c;
	}
	free(copy);
	copy = strdup(waiters ? waiters : "");
	for (item = strtok_r(copy, ",", &save); item && nconns < MAX_CONNS; item = strtok_r(NULL, ",", &save)) {
		char kind = item[0];
		struct conn c = {.fd = atoi(item + 2), .park = kind == 'W' ? WAIT : kind == 'T' ? TIMED_WAIT : STOP};
		char *ms = strchr(item + 2, ':');
		long long left = ms ? atoll(ms + 1) : 0;
		c.deadline = kind == 'W' ? 0 : kind == 'S' && left == 0 ? 0 : now + left;
		if (c.park == TIMED_WAIT && c.deadline == 0)
			c.deadline = 1;
		cloexec(c.fd, 1);
		conns[nconns++] = c;
	}
	free(copy);
}

static int frame_test(const char *name, const char *nanos)
{
	struct stream s = {.name = name};
	fixed_clock_ns = atoll(nanos);
	log_fd = 1;
	log_path = "stdout";
	char buf[4096];
	ssize_t n;
	while ((n = read(0, buf, sizeof buf)) > 0)
		frame_feed(&s, buf, (size_t)n);
	frame_finish(&s);
	return 0;
}

/* Test mode: the answer to an exec that ended with wait status STATUS (TIMED_OUT 0/1), whose
 * stdout was the first OUT_LEN bytes of stdin and stderr the rest; SAID: what exec-init wrote
 * on fd 3 ("" if nothing); the state is STATE_JSON. */
static int exec_answer_test(char **argv)
{
	struct exec x = {.status = atoi(argv[2]), .timed_out = atoi(argv[3]), .exited = 1};
	size_t out_len = (size_t)atoll(argv[4]);
	buf_str(&x.said, argv[5]);
	state_json = argv[6];
	struct buf in = {0};
	char chunk[4096];
	ssize_t n;
	while ((n = read(0, chunk, sizeof chunk)) > 0)
		buf_add(&in, chunk, (size_t)n, (size_t)-1);
	if (out_len > in.len)
		out_len = in.len;
	buf_add(&x.out, in.b, out_len, EXEC_MAX_OUTPUT);
	buf_add(&x.err, in.b + out_len, in.len - out_len, EXEC_MAX_OUTPUT);
	size_t len;
	char *a = exec_answer(&x, &len);
	return write_all(1, a, len) < 0;
}

/* ---------- launcher ---------- */

/* `launch SHIM ARGS…`: see the top of this file. Exit 0 with the report on stdout (the caller
 * reads "ok"/"error" from it); 1 with a message on stderr if the shim exited without one. */
static int launch(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: criruntime-monitor launch SHIM ARGS… (runs SHIM supervise ARGS…)\n");
		return 2;
	}
	const char *shim = argv[2];
	/* The daemon's helpers set up at a lower priority than the daemon (HelperPriority.cs); the
	 * shim goes back to the daemon's nice value before it creates the container's first process. */
	const char *nice = getenv("CRIRUNTIME_SETUP_NICE");
	if (nice) {
		int n = atoi(nice);
		if (n >= -20 && n <= 19)
			(void)setpriority(PRIO_PROCESS, 0, n);
	}
	int ready[2];
	if (pipe2(ready, O_CLOEXEC) < 0) {
		fprintf(stderr, "launch: pipe: %s\n", strerror(errno));
		return 1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "launch: fork: %s\n", strerror(errno));
		return 1;
	}
	if (pid == 0) {
		/* The shim holds none of the caller's pipes nor its terminal, and outlives it; it
		 * starts with the default signal dispositions and nothing blocked, whatever ours were. */
		setsid();
		for (int sig = 1; sig < NSIG; sig++)
			if (sig != SIGKILL && sig != SIGSTOP)
				signal(sig, SIG_DFL);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
			goto failed;
		/* dup2 onto itself keeps O_CLOEXEC: clear it by hand then. */
		if (ready[1] == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(ready[1], 3) < 0)
			goto failed;
		/* Nothing else the caller let us inherit (a descriptor it opened without O_CLOEXEC). */
		syscall(SYS_close_range, 4U, ~0U, 0U);
		char **args = calloc((size_t)argc, sizeof *args);
		if (!args)
			goto failed;
		args[0] = "criruntime-shim";
		args[1] = "supervise";
		for (int i = 3; i < argc; i++)
			args[i - 1] = argv[i];
		execv(shim, args);
	failed:;
		char message[PATH_MAX + 128];
		int n = snprintf(message, sizeof message, "error start %s: %s\n", shim, strerror(errno));
		if (n > 0)
			write_all(3, message, (size_t)n < sizeof message ? (size_t)n : sizeof message - 1);
		_exit(127);
	}
	close(ready[1]);
	char report[64 * 1024];
	size_t len = 0;
	for (;;) {
		ssize_t n = read(ready[0], report + len, sizeof report - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || (len += (size_t)n) == sizeof report - 1)
			break;
	}
	if (len == 0) {
		/* It closed fd 3 without a word: only by exiting. */
		int status = 0;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (WIFSIGNALED(status))
			fprintf(stderr, "the shim was killed by signal %d before it reported\n", WTERMSIG(status));
		else
			fprintf(stderr, "the shim exited with %d before it reported\n", WEXITSTATUS(status));
		return 1;
	}
	return write_all(1, report, len) < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "launch"))
		return launch(argc, argv);
	if (argc == 7 && !strcmp(argv[1], "exec-answer"))
		return exec_answer_test(argv);
	if (argc >= 2 && !strcmp(argv[1], "noop"))
		return 0;
	if (argc == 4 && !strcmp(argv[1], "frame"))
		return frame_test(argv[2], argv[3]);
	if (argc < 2 || strcmp(argv[1], "supervise") != 0) {
		fprintf(stderr, "usage: criruntime-monitor supervise --state DIR … (started by criruntime-shim)\n"
				"       criruntime-monitor frame STREAM UNIX_NANOS < output   (test: CRI log records)\n");
		return 2;
	}
	state_dir = need(argc, argv, "state");
	snprintf(shim_log_path, sizeof shim_log_path, "%s/shim.log", state_dir);
	id = need(argc, argv, "id");
	bundle = need(argc, argv, "bundle");
	log_path = need(argc, argv, "log");
	shim_path = need(argc, argv, "shim");
	init_pid = atoi(need(argc, argv, "pid"));
	pidfd = fd_opt(argc, argv, "pidfd");
	listen_fd = fd_opt(argc, argv, "listen");
	out.fd = fd_opt(argc, argv, "out");
	err.fd = fd_opt(argc, argv, "err");
	stdin_fd = fd_opt(argc, argv, "stdin");
	log_fd = fd_opt(argc, argv, "logfd");
	int all[] = {pidfd, listen_fd, out.fd, err.fd, stdin_fd, log_fd};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		cloexec(all[i], 1);
	if (pidfd < 0 || listen_fd < 0 || log_fd < 0) {
		shim_log("error", "started without --pidfd, --listen or --logfd");
		return 2;
	}
	add_partial(&out, opt(argc, argv, "out-partial"));
	add_partial(&err, opt(argc, argv, "err-partial"));
	add_conns(opt(argc, argv, "conns"), opt(argc, argv, "waiters"));
	load_state();

	/* SIGCHLD through a signalfd: the loop learns of the init's exit and of orphans to reap. */
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_SETMASK, &chld, NULL);
	sig_fd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sig_fd < 0) {
		shim_log("error", "signalfd: %s", strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	/* Requests the supervisor had read but not answered are served (or handed back) first. */
	for (int i = nconns - 1; i >= 0; i--) {
		if (conns[i].park != IDLE || !conns[i].len)
			continue;
		int rc = serve(i);
		if (rc < 0)
			drop(i);
		else if (rc > 0 && nexecs == 0) {
			hand_back("request");
			drop(i);
		}
	}
	run();
	return 0;
}
