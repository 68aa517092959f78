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
 *   - reaping orphans (it is the container's subreaper).
 * Everything else (exec, exec-stream, attach, resize, update, start, anything unknown or
 * malformed) and the container's exit are handed back: it execve()s `criruntime-shim supervise
 * --resume` with every descriptor it holds and every connection, parked or not, with the bytes
 * read from it but not yet answered; that .NET supervisor serves the request (or records the
 * exit, with the cgroup code that knows v1, v2 and hybrid) and execs this monitor again once idle.
 * The exited init is left a zombie for .NET to reap (waitid WNOWAIT), so its status is not lost.
 *
 * Test mode: `criruntime-monitor frame STREAM NANOS` reads stdin and writes the CRI records of
 * it to stdout, every record stamped NANOS (Unix time), to check the framing from unit tests.
 * `criruntime-monitor noop` exits 0 (the .NET supervisor spawns it to wake its reaper thread).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

enum park { IDLE, WAIT, TIMED_WAIT, STOP };

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
			double t = r.has_timeout ? r.timeout : 10;
			c->park = STOP;
			if (t > 0) {
				signal_init(r.has_signal ? (int)r.signal : SIGTERM);
				c->deadline = now_ms() + (long long)(t * 1000);
			} else {
				signal_init(SIGKILL);
				c->deadline = 0;
			}
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
		waitpid(si.si_pid, NULL, 0);
	}
}

static int pump(struct stream *s)
{
	static char buf[16 * 1024];
	ssize_t n = read(s->fd, buf, sizeof buf);
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

static void run(void)
{
	struct pollfd p[4 + MAX_CONNS];
	int idx[MAX_CONNS];
	for (;;) {
		if (init_exited()) {
			hand_back("exit");
			exit(1); /* no one can record the exit: the daemon records 255 for a dead shim */
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
		/* deadlines of parked requests */
		now = now_ms();
		for (int i = nconns - 1; i >= 0; i--) {
			struct conn *c = &conns[i];
			if (c->park == TIMED_WAIT && c->deadline <= now) {
				c->park = IDLE;
				if (answer(c->fd, 0, "timeout") < 0)
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
		if (want_net >= 0) {
			hand_back("request");
			/* exec failed: the request gets an answer that says so, the rest carries on */
			struct conn *c = &conns[want_net];
			char msg[256];
			snprintf(msg, sizeof msg, "the shim cannot serve this request: exec %s: %s", shim_path, strerror(errno));
			char *nl = memchr(c->buf, '\n', c->len);
			if (nl) {
				size_t len = (size_t)(nl - c->buf);
				memmove(c->buf, nl + 1, c->len - len - 1);
				c->len -= len + 1;
			}
			if (answer(c->fd, 0, msg) < 0)
				drop(want_net);
		}
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

int main(int argc, char **argv)
{
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
		else if (rc > 0) {
			hand_back("request");
			drop(i);
		}
	}
	run();
	return 0;
}
