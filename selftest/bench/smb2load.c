/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * smb2load: an SMB2 load generator that is not the bottleneck.
 *
 * It keeps DEPTH requests in flight on each of CONNS connections, all from
 * one thread and one poll() loop, and reports operations per second,
 * p50/p99 latency of the operations and of echo probes, and its own CPU
 * time (getrusage).  Operations:
 *
 *   create  create+close of a new file (FILE_CREATE), one compound
 *           message as Windows sends it (or --no-compound: the close
 *           after the create's answer)
 *   open    open+close of an existing file for read-data access
 *   echo    SMB2 ECHO only
 *
 * Why a client of our own: libsmbclient waits for each answer before it
 * sends the next request on a connection, so it cannot keep a connection
 * busy; smbtorture's smb2.bench.* tests are written for their own
 * workloads (path-based, fixed per test) and report neither per-request
 * latency percentiles nor their own CPU time; the Python clients cost more
 * CPU than the server they measured (issue 24).  This one speaks SMB 2.1
 * over a plain socket with NTLMSSP (NTLMv2) authentication of a real user,
 * without signing (the test share does not require it), which is all it
 * needs, and spends a few microseconds per request.
 *
 * The last line on stdout is "result key=value ...", for the benchmark.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nettle/hmac.h>
#include <nettle/md4.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SMB2_HDR_LEN 64
#define SMB2_NEGOTIATE 0x0000
#define SMB2_SESSION_SETUP 0x0001
#define SMB2_TREE_CONNECT 0x0003
#define SMB2_CREATE 0x0005
#define SMB2_CLOSE 0x0006
#define SMB2_ECHO 0x000D

#define SMB2_FLAGS_SERVER_TO_REDIR 0x00000001
#define SMB2_FLAGS_ASYNC_COMMAND 0x00000002
#define SMB2_FLAGS_RELATED_OPERATIONS 0x00000004

#define STATUS_SUCCESS 0x00000000
#define STATUS_PENDING 0x00000103
#define STATUS_MORE_PROCESSING_REQUIRED 0xC0000016

#define FILE_OPEN 1
#define FILE_CREATE 2
#define FILE_NON_DIRECTORY_FILE 0x00000040

/* NTLMSSP negotiate flags */
#define NTLMSSP_NEGOTIATE_UNICODE 0x00000001
#define NTLMSSP_REQUEST_TARGET 0x00000004
#define NTLMSSP_NEGOTIATE_NTLM 0x00000200
#define NTLMSSP_NEGOTIATE_ALWAYS_SIGN 0x00008000
#define NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY 0x00080000
#define NTLMSSP_NEGOTIATE_TARGET_INFO 0x00800000
#define NTLMSSP_NEGOTIATE_128 0x20000000
#define NTLMSSP_NEGOTIATE_56 0x80000000

#define CREDITS_ASKED 256
#define MAX_PDU (1 << 20)

enum op_kind { OP_CREATE, OP_OPEN, OP_ECHO };

struct options {
	const char *host;
	int port;
	const char *user;
	const char *password;
	const char *domain;
	const char *share;
	const char *prefix;
	const char *tag;	/* makes this run's new names its own */
	enum op_kind op;
	int conns;
	int depth;
	double seconds;
	int echo_ms;
	bool compound;
	bool dirs;
	bool quiet;
};

/* Latencies in microseconds, grown as needed. */
struct samples {
	uint32_t *v;
	size_t n;
	size_t cap;
};

/* One request in flight, found by its message id. */
struct inflight {
	uint64_t mid;
	int slot;		/* -1: echo probe */
	bool is_close;		/* the close of an open+close */
	bool active;
	uint64_t t0;
};

struct conn {
	int id;
	int fd;
	uint64_t next_mid;
	int64_t credits;
	uint64_t session_id;
	uint32_t tree_id;
	/* output queue */
	uint8_t *out;
	size_t out_len;
	size_t out_cap;
	/* input buffer */
	uint8_t *in;
	size_t in_len;
	size_t in_cap;
	/* per slot: sequence number, busy, start time */
	uint64_t *seq;
	bool *busy;
	uint64_t *started;
	/* requests in flight, indexed by mid modulo ring size */
	struct inflight *ring;
	size_t ring_size;
	bool echo_out;
	uint64_t next_echo;
	uint64_t done;
	int waiting;		/* slots waiting for credits */
};

static struct options opt = {
	.host = "127.0.0.1",
	.port = 445,
	.domain = NULL,
	.prefix = "ld",
	.op = OP_CREATE,
	.conns = 1,
	.depth = 16,
	.seconds = 10,
	.echo_ms = 100,
	.compound = true,
};

static struct samples op_lat, echo_lat;
static uint64_t errors;
static uint32_t first_error;
static uint64_t *per_second;
static size_t per_second_n;
static uint64_t t_start;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2),
						      noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "smb2load: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

static uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (p == NULL) {
		die("out of memory");
	}
	return p;
}

static void samples_add(struct samples *s, uint64_t usec)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 4096;
		s->v = xrealloc(s->v, s->cap * sizeof(s->v[0]));
	}
	s->v[s->n++] = usec > UINT32_MAX ? UINT32_MAX : (uint32_t)usec;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static uint32_t percentile(struct samples *s, double p)
{
	size_t i;

	if (s->n == 0) {
		return 0;
	}
	i = (size_t)(p * (double)(s->n - 1) + 0.5);
	return s->v[i];
}

/* --- little-endian buffers ------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v);
	put16(p + 2, v >> 16);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, v);
	put32(p + 4, v >> 32);
}

static uint16_t get16(const uint8_t *p)
{
	return p[0] | (uint16_t)p[1] << 8;
}

static uint32_t get32(const uint8_t *p)
{
	return get16(p) | (uint32_t)get16(p + 2) << 16;
}

static uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* ASCII to UTF-16LE; returns the byte length. */
static size_t utf16(uint8_t *dst, const char *s, bool upper)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		char c = upper ? toupper((unsigned char)s[i]) : s[i];

		put16(dst + 2 * i, (uint8_t)c);
	}
	return 2 * i;
}

/* --- building requests ----------------------------------------------- */

/*
 * Append one SMB2 request to the connection's output queue, opening a
 * new transport frame unless chained is set (then it is compounded onto
 * the previous request, which gets its NextCommand).  Returns the mid.
 */
static size_t frame_start;
static size_t prev_cmd;

static uint8_t *out_reserve(struct conn *c, size_t n)
{
	if (c->out_len + n > c->out_cap) {
		c->out_cap = (c->out_len + n) * 2;
		c->out = xrealloc(c->out, c->out_cap);
	}
	return c->out + c->out_len;
}

static uint64_t add_request(struct conn *c, uint16_t cmd, const uint8_t *body,
			    size_t body_len, bool chained, uint32_t flags)
{
	uint64_t mid = c->next_mid++;
	size_t pad = 0;
	uint8_t *h = NULL;

	if (chained) {
		/* the previous command starts on an 8-byte boundary */
		size_t len = c->out_len - prev_cmd;

		pad = (8 - len % 8) % 8;
		memset(out_reserve(c, pad), 0, pad);
		c->out_len += pad;
		put32(c->out + prev_cmd + 20, c->out_len - prev_cmd);
	} else {
		frame_start = c->out_len;
		memset(out_reserve(c, 4), 0, 4);
		c->out_len += 4;
	}
	prev_cmd = c->out_len;
	h = out_reserve(c, SMB2_HDR_LEN + body_len);
	memset(h, 0, SMB2_HDR_LEN);
	memcpy(h, "\xfeSMB", 4);
	put16(h + 4, SMB2_HDR_LEN);
	put16(h + 6, mid == 0 ? 0 : 1);		/* credit charge */
	put16(h + 12, cmd);
	put16(h + 14, CREDITS_ASKED);
	put32(h + 16, flags);
	put64(h + 24, mid);
	put32(h + 36, c->tree_id);
	put64(h + 40, c->session_id);
	memcpy(h + SMB2_HDR_LEN, body, body_len);
	c->out_len += SMB2_HDR_LEN + body_len;
	/* the transport frame's length (big endian, 24 bits) */
	{
		size_t len = c->out_len - frame_start - 4;

		c->out[frame_start + 1] = len >> 16;
		c->out[frame_start + 2] = len >> 8;
		c->out[frame_start + 3] = len;
	}
	c->credits--;
	return mid;
}

static uint64_t add_create(struct conn *c, const char *name, uint32_t access,
			   uint32_t disposition)
{
	uint8_t b[56 + 2 * 256];
	size_t nlen;

	memset(b, 0, sizeof(b));
	put16(b, 57);
	put32(b + 4, 2);			/* impersonation */
	put32(b + 24, access);
	put32(b + 28, 0x80);			/* FILE_ATTRIBUTE_NORMAL */
	put32(b + 32, 7);			/* share read|write|delete */
	put32(b + 36, disposition);
	put32(b + 40, FILE_NON_DIRECTORY_FILE);
	nlen = utf16(b + 56, name, false);
	put16(b + 44, SMB2_HDR_LEN + 56);
	put16(b + 46, nlen);
	return add_request(c, SMB2_CREATE, b, 56 + (nlen ? nlen : 1), false,
			   0);
}

/* A close of fid, or of the compound's create (related, fid all ones). */
static uint64_t add_close(struct conn *c, const uint8_t *fid, bool related)
{
	uint8_t b[24];

	memset(b, 0, sizeof(b));
	put16(b, 24);
	if (related) {
		memset(b + 8, 0xff, 16);
	} else {
		memcpy(b + 8, fid, 16);
	}
	return add_request(c, SMB2_CLOSE, b, sizeof(b), related,
			   related ? SMB2_FLAGS_RELATED_OPERATIONS : 0);
}

static uint64_t add_echo(struct conn *c)
{
	uint8_t b[4] = { 4, 0, 0, 0 };

	return add_request(c, SMB2_ECHO, b, sizeof(b), false, 0);
}

/* --- socket I/O -------------------------------------------------------- */

static bool flush_out(struct conn *c, bool block)
{
	size_t off = 0;

	while (off < c->out_len) {
		ssize_t n = send(c->fd, c->out + off, c->out_len - off,
				 block ? 0 : MSG_DONTWAIT);

		if (n < 0) {
			if (!block && (errno == EAGAIN || errno == EINTR)) {
				break;
			}
			die("connection %d: send: %s", c->id,
			    strerror(errno));
		}
		off += n;
	}
	memmove(c->out, c->out + off, c->out_len - off);
	c->out_len -= off;
	return c->out_len == 0;
}

/* One whole transport frame from the input buffer, or NULL. */
static uint8_t *next_frame(struct conn *c, size_t *len)
{
	size_t n;

	if (c->in_len < 4) {
		return NULL;
	}
	n = (size_t)c->in[1] << 16 | (size_t)c->in[2] << 8 | c->in[3];
	if (n > MAX_PDU) {
		die("connection %d: frame of %zu bytes", c->id, n);
	}
	if (c->in_len < 4 + n) {
		return NULL;
	}
	*len = n;
	return c->in + 4;
}

static void consume_frame(struct conn *c, size_t len)
{
	memmove(c->in, c->in + 4 + len, c->in_len - 4 - len);
	c->in_len -= 4 + len;
}

static bool read_in(struct conn *c, bool block)
{
	ssize_t n;

	if (c->in_cap - c->in_len < 65536) {
		c->in_cap = c->in_cap * 2 + 65536;
		c->in = xrealloc(c->in, c->in_cap);
	}
	n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len,
		 block ? 0 : MSG_DONTWAIT);
	if (n == 0) {
		die("connection %d: closed by the server", c->id);
	}
	if (n < 0) {
		if (!block && (errno == EAGAIN || errno == EINTR)) {
			return false;
		}
		die("connection %d: recv: %s", c->id, strerror(errno));
	}
	c->in_len += n;
	return true;
}

/*
 * During setup: send what is queued, wait for the answer to mid (interim
 * answers skipped) and copy it to buf.  Returns its status.
 */
static uint32_t exchange(struct conn *c, uint64_t mid, uint8_t **pdu,
			 size_t *pdu_len)
{
	static uint8_t *copy;
	uint8_t *f = NULL;
	size_t len;

	flush_out(c, true);
	for (;;) {
		while ((f = next_frame(c, &len)) == NULL) {
			read_in(c, true);
		}
		if (len < SMB2_HDR_LEN || memcmp(f, "\xfeSMB", 4) != 0) {
			die("connection %d: not an SMB2 answer", c->id);
		}
		c->credits += get16(f + 14);
		if (get64(f + 24) == mid && get32(f + 8) != STATUS_PENDING) {
			break;
		}
		consume_frame(c, len);
	}
	copy = xrealloc(copy, len);
	memcpy(copy, f, len);
	consume_frame(c, len);
	*pdu = copy;
	*pdu_len = len;
	return get32(copy + 8);
}

/* --- NTLMSSP (NTLMv2) ---------------------------------------------- */

static void hmac_md5(const uint8_t *key, size_t klen, const uint8_t *a,
		     size_t alen, const uint8_t *b, size_t blen,
		     uint8_t out[16])
{
	struct hmac_md5_ctx ctx;

	hmac_md5_set_key(&ctx, klen, key);
	hmac_md5_update(&ctx, alen, a);
	if (blen) {
		hmac_md5_update(&ctx, blen, b);
	}
	hmac_md5_digest(&ctx, 16, out);
}

static size_t ntlm_negotiate(uint8_t *b)
{
	memset(b, 0, 32);
	memcpy(b, "NTLMSSP", 8);
	put32(b + 8, 1);
	put32(b + 12, NTLMSSP_NEGOTIATE_UNICODE | NTLMSSP_REQUEST_TARGET |
		      NTLMSSP_NEGOTIATE_NTLM | NTLMSSP_NEGOTIATE_ALWAYS_SIGN |
		      NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY |
		      NTLMSSP_NEGOTIATE_TARGET_INFO | NTLMSSP_NEGOTIATE_128 |
		      NTLMSSP_NEGOTIATE_56);
	return 32;
}

static void put_field(uint8_t *msg, size_t field, size_t *payload,
		      const uint8_t *data, size_t len)
{
	put16(msg + field, len);
	put16(msg + field + 2, len);
	put32(msg + field + 4, *payload);
	memcpy(msg + *payload, data, len);
	*payload += len;
}

/* The AUTHENTICATE_MESSAGE answering challenge; returns its length. */
static size_t ntlm_authenticate(const uint8_t *chal, size_t chal_len,
				uint8_t *out, size_t out_cap)
{
	uint8_t pw[512], name[1024], nt_hash[16], v2_hash[16], proof[16];
	uint8_t blob[2048], resp[2048], dom[256], usr[256], lm[24];
	struct md4_ctx md4;
	const uint8_t *tinfo = NULL;
	size_t tinfo_len, tinfo_off, blen, n, payload = 64;
	size_t dlen, ulen;
	uint32_t flags;
	uint64_t filetime;
	struct timespec ts;
	int i;

	if (chal_len < 48 || memcmp(chal, "NTLMSSP", 8) != 0 ||
	    get32(chal + 8) != 2) {
		die("no NTLMSSP challenge from the server");
	}
	flags = get32(chal + 20);
	tinfo_len = get16(chal + 40);
	tinfo_off = get32(chal + 44);
	if (tinfo_off + tinfo_len > chal_len || tinfo_len > 1024) {
		die("bad NTLMSSP target info");
	}
	tinfo = chal + tinfo_off;
	if (strlen(opt.password) > 200 || strlen(opt.user) > 100 ||
	    strlen(opt.domain) > 100) {
		die("user, domain or password too long");
	}

	/* NT hash, then the NTLMv2 key over user (upper case) and domain */
	n = utf16(pw, opt.password, false);
	md4_init(&md4);
	md4_update(&md4, n, pw);
	md4_digest(&md4, 16, nt_hash);
	ulen = utf16(usr, opt.user, false);
	dlen = utf16(dom, opt.domain, false);
	n = utf16(name, opt.user, true);
	memcpy(name + n, dom, dlen);
	hmac_md5(nt_hash, 16, name, n + dlen, NULL, 0, v2_hash);

	/* the NTLMv2 client blob */
	clock_gettime(CLOCK_REALTIME, &ts);
	filetime = ((uint64_t)ts.tv_sec + 11644473600ULL) * 10000000ULL +
		   ts.tv_nsec / 100;
	memset(blob, 0, 28);
	blob[0] = 1;
	blob[1] = 1;
	put64(blob + 8, filetime);
	for (i = 0; i < 8; i++) {
		blob[16 + i] = (uint8_t)random();
	}
	memcpy(blob + 28, tinfo, tinfo_len);
	memset(blob + 28 + tinfo_len, 0, 4);
	blen = 28 + tinfo_len + 4;
	hmac_md5(v2_hash, 16, chal + 24, 8, blob, blen, proof);
	memcpy(resp, proof, 16);
	memcpy(resp + 16, blob, blen);
	memset(lm, 0, sizeof(lm));

	if (out_cap < 64 + 24 + 16 + blen + dlen + ulen) {
		die("NTLMSSP message too long");
	}
	memset(out, 0, 64);
	memcpy(out, "NTLMSSP", 8);
	put32(out + 8, 3);
	put_field(out, 12, &payload, lm, sizeof(lm));
	put_field(out, 20, &payload, resp, 16 + blen);
	put_field(out, 28, &payload, dom, dlen);
	put_field(out, 36, &payload, usr, ulen);
	put_field(out, 44, &payload, NULL, 0);	/* workstation */
	put_field(out, 52, &payload, NULL, 0);	/* session key */
	put32(out + 60, flags & (NTLMSSP_NEGOTIATE_UNICODE |
				 NTLMSSP_NEGOTIATE_NTLM |
				 NTLMSSP_NEGOTIATE_ALWAYS_SIGN |
				 NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY |
				 NTLMSSP_NEGOTIATE_TARGET_INFO |
				 NTLMSSP_NEGOTIATE_128 |
				 NTLMSSP_NEGOTIATE_56));
	return payload;
}

/* --- connection setup -------------------------------------------------- */

static uint64_t add_session_setup(struct conn *c, const uint8_t *tok,
				  size_t tok_len)
{
	uint8_t b[24 + 4096];

	if (tok_len > 4096) {
		die("security token too long");
	}
	memset(b, 0, 24);
	put16(b, 25);
	b[3] = 1;				/* signing enabled */
	put16(b + 12, SMB2_HDR_LEN + 24);
	put16(b + 14, tok_len);
	memcpy(b + 24, tok, tok_len);
	return add_request(c, SMB2_SESSION_SETUP, b, 24 + tok_len, false, 0);
}

static void connect_one(struct conn *c)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	uint8_t b[4096], *r = NULL;
	size_t rlen, n;
	uint32_t status;
	uint64_t mid;
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_port = htons(opt.port);
	if (c->fd < 0 || inet_pton(AF_INET, opt.host, &sa.sin_addr) != 1 ||
	    connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		die("connection %d: cannot connect to %s:%d: %s", c->id,
		    opt.host, opt.port, strerror(errno));
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->credits = 1;

	/* NEGOTIATE: SMB 2.1 only (no signing, no preauth integrity) */
	memset(b, 0, 38);
	put16(b, 36);
	put16(b + 2, 1);			/* one dialect */
	put16(b + 4, 1);			/* signing enabled */
	for (n = 0; n < 16; n++) {
		b[12 + n] = (uint8_t)random();	/* client guid */
	}
	put16(b + 36, 0x0210);
	mid = add_request(c, SMB2_NEGOTIATE, b, 38, false, 0);
	status = exchange(c, mid, &r, &rlen);
	if (status != STATUS_SUCCESS || get16(r + SMB2_HDR_LEN + 4) != 0x0210) {
		die("negotiate: status 0x%08x", status);
	}

	n = ntlm_negotiate(b);
	mid = add_session_setup(c, b, n);
	status = exchange(c, mid, &r, &rlen);
	if (status != STATUS_MORE_PROCESSING_REQUIRED) {
		die("session setup 1: status 0x%08x", status);
	}
	c->session_id = get64(r + 40);
	{
		size_t off = get16(r + SMB2_HDR_LEN + 4);
		size_t len = get16(r + SMB2_HDR_LEN + 6);

		if (off + len > rlen) {
			die("session setup 1: bad security buffer");
		}
		n = ntlm_authenticate(r + off, len, b, sizeof(b));
	}
	mid = add_session_setup(c, b, n);
	status = exchange(c, mid, &r, &rlen);
	if (status != STATUS_SUCCESS) {
		die("session setup as %s\\%s: status 0x%08x", opt.domain,
		    opt.user, status);
	}

	/* TREE_CONNECT \\host\share */
	{
		char path[512];

		snprintf(path, sizeof(path), "\\\\%s\\%s", opt.host, opt.share);
		memset(b, 0, 8);
		put16(b, 9);
		n = utf16(b + 8, path, false);
		put16(b + 4, SMB2_HDR_LEN + 8);
		put16(b + 6, n);
		mid = add_request(c, SMB2_TREE_CONNECT, b, 8 + n, false, 0);
	}
	status = exchange(c, mid, &r, &rlen);
	if (status != STATUS_SUCCESS) {
		die("tree connect to %s: status 0x%08x", opt.share, status);
	}
	c->tree_id = get32(r + 36);
}

/* --- the load -------------------------------------------------------- */

static struct inflight *track(struct conn *c, uint64_t mid, int slot,
			      bool is_close, uint64_t t0)
{
	struct inflight *f = &c->ring[mid % c->ring_size];

	if (f->active) {
		die("connection %d: more requests in flight than tracked",
		    c->id);
	}
	*f = (struct inflight){ .mid = mid, .slot = slot,
				.is_close = is_close, .active = true,
				.t0 = t0 };
	return f;
}

static struct inflight *find(struct conn *c, uint64_t mid)
{
	struct inflight *f = &c->ring[mid % c->ring_size];

	return (f->active && f->mid == mid) ? f : NULL;
}

static void slot_name(char *buf, size_t len, struct conn *c, int slot)
{
	if (opt.op == OP_OPEN) {
		snprintf(buf, len, "%s_%d_%d", opt.prefix, c->id, slot);
	} else if (opt.dirs) {
		snprintf(buf, len, "%s_%d_%d\\%s-%llu", opt.prefix, c->id,
			 slot, opt.tag, (unsigned long long)c->seq[slot]);
	} else {
		snprintf(buf, len, "%s_%d_%d_%s-%llu", opt.prefix, c->id, slot,
			 opt.tag, (unsigned long long)c->seq[slot]);
	}
}

/* Credits one operation of a slot takes. */
static int op_credits(void)
{
	return (opt.op == OP_ECHO || !opt.compound) ? 1 : 2;
}

static bool start_slot(struct conn *c, int slot, uint64_t t)
{
	char name[256];
	uint64_t mid;

	if (c->credits < op_credits()) {
		return false;
	}
	c->started[slot] = t;
	c->busy[slot] = true;
	if (opt.op == OP_ECHO) {
		track(c, add_echo(c), slot, true, t);
		return true;
	}
	slot_name(name, sizeof(name), c, slot);
	c->seq[slot]++;
	if (opt.op == OP_CREATE) {
		mid = add_create(c, name, 0x00100083, FILE_CREATE);
	} else {
		mid = add_create(c, name, 0x00100081, FILE_OPEN);
	}
	track(c, mid, slot, false, t);
	if (opt.compound) {
		track(c, add_close(c, NULL, true), slot, true, t);
	}
	return true;
}

static void note_error(uint32_t status)
{
	if (errors++ == 0) {
		first_error = status;
	}
}

static void slot_done(struct conn *c, int slot, uint64_t t)
{
	size_t sec = (t - t_start) / 1000000;

	c->busy[slot] = false;
	c->done++;
	samples_add(&op_lat, t - c->started[slot]);
	if (sec < per_second_n) {
		per_second[sec]++;
	}
}

static void handle_pdu(struct conn *c, const uint8_t *h, size_t len,
		       uint64_t t)
{
	uint32_t status = get32(h + 8);
	uint32_t flags = get32(h + 16);
	struct inflight *f = NULL;
	uint16_t cmd = get16(h + 12);

	c->credits += get16(h + 14);
	if (status == STATUS_PENDING && (flags & SMB2_FLAGS_ASYNC_COMMAND)) {
		return;			/* interim: the answer comes later */
	}
	f = find(c, get64(h + 24));
	if (f == NULL) {
		die("connection %d: answer to unknown mid %llu", c->id,
		    (unsigned long long)get64(h + 24));
	}
	f->active = false;
	if (f->slot < 0) {			/* echo probe */
		c->echo_out = false;
		samples_add(&echo_lat, t - f->t0);
		return;
	}
	if (status != STATUS_SUCCESS) {
		note_error(status);
	}
	if (cmd == SMB2_CREATE && !opt.compound) {
		if (status == STATUS_SUCCESS && len >= SMB2_HDR_LEN + 80) {
			/* asked for many credits each time: there are some */
			track(c, add_close(c, h + SMB2_HDR_LEN + 64, false),
			      f->slot, true, f->t0);
			return;
		}
		slot_done(c, f->slot, t);
		return;
	}
	if (f->is_close) {
		slot_done(c, f->slot, t);
	}
}

static void handle_input(struct conn *c, uint64_t t)
{
	uint8_t *frame = NULL;
	size_t len;

	while ((frame = next_frame(c, &len)) != NULL) {
		size_t off = 0;

		for (;;) {
			uint8_t *h = frame + off;
			uint32_t next;

			if (len - off < SMB2_HDR_LEN ||
			    memcmp(h, "\xfeSMB", 4) != 0) {
				die("connection %d: not an SMB2 answer",
				    c->id);
			}
			next = get32(h + 20);
			handle_pdu(c, h, next ? next : len - off, t);
			if (next == 0 || off + next >= len) {
				break;
			}
			off += next;
		}
		consume_frame(c, len);
	}
}

static void fill(struct conn *c, uint64_t t, bool running)
{
	int s;

	if (running && opt.echo_ms > 0 && !c->echo_out &&
	    t >= c->next_echo && c->credits >= 1) {
		track(c, add_echo(c), -1, true, t);
		c->echo_out = true;
		c->next_echo = t + (uint64_t)opt.echo_ms * 1000;
	}
	if (!running) {
		return;
	}
	for (s = 0; s < opt.depth; s++) {
		if (!c->busy[s] && !start_slot(c, s, t)) {
			break;
		}
	}
}

static int busy_count(struct conn *c)
{
	int s, n = c->echo_out;

	for (s = 0; s < opt.depth; s++) {
		n += c->busy[s];
	}
	return n;
}

static void run(struct conn *cs)
{
	struct pollfd *pfd = calloc(opt.conns, sizeof(*pfd));
	uint64_t t = now_usec(), end, last_print;
	bool running = true;
	int i, left;

	if (pfd == NULL) {
		die("out of memory");
	}
	t_start = t;
	end = t + (uint64_t)(opt.seconds * 1e6);
	last_print = t;
	per_second_n = (size_t)opt.seconds + 2;
	per_second = calloc(per_second_n, sizeof(*per_second));
	for (;;) {
		t = now_usec();
		if (running && t >= end) {
			running = false;
		}
		left = 0;
		for (i = 0; i < opt.conns; i++) {
			fill(&cs[i], t, running);
			flush_out(&cs[i], false);
			left += busy_count(&cs[i]);
			pfd[i].fd = cs[i].fd;
			pfd[i].events = POLLIN | (cs[i].out_len ? POLLOUT : 0);
		}
		if (!running && left == 0) {
			break;
		}
		if (!opt.quiet && t - last_print >= 1000000 && running) {
			size_t sec = (last_print - t_start) / 1000000;

			fprintf(stderr, "smb2load: second %zu: %llu ops\n",
				sec + 1,
				(unsigned long long)per_second[sec]);
			last_print += 1000000;
		}
		if (poll(pfd, opt.conns, 10) < 0 && errno != EINTR) {
			die("poll: %s", strerror(errno));
		}
		t = now_usec();
		if (!running && t > end + 120 * 1000000ULL) {
			die("answers still missing 120 s after the end");
		}
		for (i = 0; i < opt.conns; i++) {
			if (pfd[i].revents & (POLLIN | POLLERR | POLLHUP)) {
				while (read_in(&cs[i], false)) {
				}
				handle_input(&cs[i], t);
			}
		}
	}
	free(pfd);
}

static double tv_sec(struct timeval tv)
{
	return tv.tv_sec + tv.tv_usec / 1e6;
}

static void report(struct conn *cs, double wall)
{
	struct rusage ru;
	uint64_t total = 0;
	size_t s, full;
	int i;

	getrusage(RUSAGE_SELF, &ru);
	qsort(op_lat.v, op_lat.n, sizeof(uint32_t), cmp_u32);
	qsort(echo_lat.v, echo_lat.n, sizeof(uint32_t), cmp_u32);
	for (i = 0; i < opt.conns; i++) {
		total += cs[i].done;
	}
	full = (size_t)opt.seconds;
	printf("per_second");
	for (s = 0; s < full && s < per_second_n; s++) {
		printf(" %llu", (unsigned long long)per_second[s]);
	}
	printf("\nresult ops=%llu seconds=%.3f rate=%.1f p50_us=%u p99_us=%u "
	       "echo_n=%zu echo_p50_us=%u echo_p99_us=%u errors=%llu "
	       "first_error=0x%08x cpu_user_s=%.3f cpu_sys_s=%.3f per_conn=",
	       (unsigned long long)total, wall, total / opt.seconds,
	       percentile(&op_lat, 0.5), percentile(&op_lat, 0.99),
	       echo_lat.n, percentile(&echo_lat, 0.5),
	       percentile(&echo_lat, 0.99), (unsigned long long)errors,
	       first_error, tv_sec(ru.ru_utime), tv_sec(ru.ru_stime));
	for (i = 0; i < opt.conns; i++) {
		printf("%s%llu", i ? "," : "",
		       (unsigned long long)cs[i].done);
	}
	printf("\n");
}

static void usage(void)
{
	fprintf(stderr,
		"usage: smb2load --user U --password P --share S [options]\n"
		"  --host ADDR       server address [127.0.0.1]\n"
		"  --port N          [445]\n"
		"  --domain D        NTLM domain [empty]\n"
		"  --op create|open|echo   [create]\n"
		"  --conns M         connections [1]\n"
		"  --depth N         operations in flight per connection [16]\n"
		"  --seconds T       [10]\n"
		"  --echo-ms MS      an echo probe per connection every MS, "
		"0 none [100]\n"
		"  --prefix P        names: create P_<conn>_<slot>_<tag>-<seq>,"
		"\n"
		"                    with --dirs P_<conn>_<slot>\\<tag>-<seq> "
		"(the\n"
		"                    directories must exist); open "
		"P_<conn>_<slot>\n"
		"                    (the files must exist) [ld]\n"
		"  --tag T           in the names of new files [the pid]\n"
		"  --no-compound     close after the create's answer\n"
		"  --quiet           no per-second lines on stderr\n");
	exit(2);
}

static void parse_args(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "host", 1, NULL, 'h' }, { "port", 1, NULL, 'p' },
		{ "user", 1, NULL, 'u' }, { "password", 1, NULL, 'w' },
		{ "domain", 1, NULL, 'd' }, { "share", 1, NULL, 's' },
		{ "op", 1, NULL, 'o' }, { "conns", 1, NULL, 'c' },
		{ "depth", 1, NULL, 'n' }, { "seconds", 1, NULL, 't' },
		{ "echo-ms", 1, NULL, 'e' }, { "prefix", 1, NULL, 'x' },
		{ "no-compound", 0, NULL, 'C' }, { "dirs", 0, NULL, 'D' },
		{ "quiet", 0, NULL, 'q' }, { "tag", 1, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'h': opt.host = optarg; break;
		case 'p': opt.port = atoi(optarg); break;
		case 'u': opt.user = optarg; break;
		case 'w': opt.password = optarg; break;
		case 'd': opt.domain = optarg; break;
		case 's': opt.share = optarg; break;
		case 'c': opt.conns = atoi(optarg); break;
		case 'n': opt.depth = atoi(optarg); break;
		case 't': opt.seconds = atof(optarg); break;
		case 'e': opt.echo_ms = atoi(optarg); break;
		case 'x': opt.prefix = optarg; break;
		case 'C': opt.compound = false; break;
		case 'D': opt.dirs = true; break;
		case 'q': opt.quiet = true; break;
		case 'T': opt.tag = optarg; break;
		case 'o':
			if (strcmp(optarg, "create") == 0) {
				opt.op = OP_CREATE;
			} else if (strcmp(optarg, "open") == 0) {
				opt.op = OP_OPEN;
			} else if (strcmp(optarg, "echo") == 0) {
				opt.op = OP_ECHO;
			} else {
				usage();
			}
			break;
		default:
			usage();
		}
	}
	if (opt.user == NULL || opt.password == NULL || opt.share == NULL ||
	    opt.conns < 1 || opt.depth < 1 || opt.seconds <= 0) {
		usage();
	}
	if (opt.domain == NULL) {
		opt.domain = "";
	}
	if (opt.tag == NULL) {
		static char pid[16];

		snprintf(pid, sizeof(pid), "%d", (int)getpid());
		opt.tag = pid;
	}
}

int main(int argc, char **argv)
{
	struct conn *cs = NULL;
	uint64_t t0;
	int i;

	parse_args(argc, argv);
	srandom(getpid() ^ (unsigned)now_usec());
	cs = calloc(opt.conns, sizeof(*cs));
	if (cs == NULL) {
		die("out of memory");
	}
	for (i = 0; i < opt.conns; i++) {
		struct conn *c = &cs[i];

		c->id = i;
		c->seq = calloc(opt.depth, sizeof(*c->seq));
		c->busy = calloc(opt.depth, sizeof(*c->busy));
		c->started = calloc(opt.depth, sizeof(*c->started));
		/* a request may stay in flight while 65,535 others pass */
		c->ring_size = 1 << 16;
		c->ring = calloc(c->ring_size, sizeof(*c->ring));
		if (!c->seq || !c->busy || !c->started || !c->ring) {
			die("out of memory");
		}
		connect_one(c);
	}
	t0 = now_usec();
	run(cs);
	report(cs, (now_usec() - t0) / 1e6);
	return errors ? 1 : 0;
}
