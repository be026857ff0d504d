/* crailpy's NVMe/TCP queue engine (see nvme_tcp.h, and docs/nvmf.md for why it is C).
 *
 * The PDU layouts are those of crailpy/protocol/nvme_tcp.py, the codec the
 * built-in target and the fuzzer share; this file reads and writes only what
 * an initiator's I/O needs after ICReq/ICResp: CapsuleCmd and H2CData out,
 * CapsuleResp, C2HData, R2T and C2HTermReq in. No digests are negotiated, so
 * a PDU that claims one breaks the rules.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/time.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "nvme_tcp.h"

enum { C2H_TERM_REQ = 0x03, CAPSULE_CMD = 0x04, CAPSULE_RESP = 0x05, H2C_DATA = 0x06,
       C2H_DATA = 0x07, R2T = 0x09 };
enum { HDGST = 0x01, DDGST = 0x02, LAST_PDU = 0x04, SUCCESS = 0x08 };
enum { COMMON = 8, SQE = 64, CAPSULE_HLEN = COMMON + SQE, HLEN = 24 /* every other PDU here */ };
enum { SGL_IN_CAPSULE = 0x01, SGL_TRANSPORT = 0x5A };
enum { NVM_WRITE = 0x01, NVM_READ = 0x02, PSDT_SGL = 0x40 };
/* Data of a PDU from this size on is sent by reference (see send_pdu), and the
 * queue's pipe holds up to this much of it at a time, where the system allows. */
enum { SPLICE_MIN = 64 << 10, SPLICE_PIPE = 1 << 20 };

struct slot {
    nvt_command *command; /* NULL: the id is free */
    char *in;
    size_t in_len;
    const char *out;
    size_t out_len;
};

struct nvt_queue {
    int fd, timeout_ms;
    unsigned depth, cpda;
    uint32_t maxh2cdata;
    pthread_mutex_t lock;      /* everything below */
    pthread_cond_t changed;    /* a command completed, the receiver left, or the queue failed */
    pthread_mutex_t send_lock; /* one PDU on the wire at a time, and the pipe below */
    int pipe[2];               /* for send_pdu's vmsplice and splice; -1 without */
    size_t pipe_size;
    int failed;
    int receiving;             /* a thread is reading the socket; the others wait on `changed` */
    unsigned next;             /* where the search for a free command id starts */
    char error[200];
    struct slot slots[];
};

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return get16(p) | (uint32_t)get16(p + 2) << 16; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }

/* Fail the queue (the first reason sticks) and shut its socket down. Always -1. */
static int fail(nvt_queue *q, const char *format, ...)
{
    pthread_mutex_lock(&q->lock);
    if (!q->failed) {
        va_list args;
        va_start(args, format);
        vsnprintf(q->error, sizeof q->error, format, args);
        va_end(args);
        q->failed = 1;
        shutdown(q->fd, SHUT_RDWR);
        pthread_cond_broadcast(&q->changed);
    }
    pthread_mutex_unlock(&q->lock);
    return -1;
}

static int failed(nvt_queue *q)
{
    pthread_mutex_lock(&q->lock);
    int failed = q->failed;
    pthread_mutex_unlock(&q->lock);
    return failed;
}

/* A call on the socket returned -1: 0 if a signal interrupted it (call again),
 * else the queue fails: `stalled` past the socket's timeout, `what` otherwise. */
static int interrupted_or_fail(nvt_queue *q, const char *what, const char *stalled)
{
    if (errno == EINTR)
        return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return fail(q, "%s in %d ms", stalled, q->timeout_ms);
    return fail(q, "%s: %s", what, strerror(errno));
}

static int receive(nvt_queue *q, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = recv(q->fd, p, len, MSG_WAITALL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n == 0) {
            return fail(q, "the target closed the connection");
        } else if (interrupted_or_fail(q, "receive", "no answer")) {
            return -1;
        }
    }
    return 0;
}

/* Send all of iov[0..n), with `flags` (MSG_MORE: more of the PDU follows); the
 * caller holds send_lock. */
static int send_all(nvt_queue *q, struct iovec *iov, int n, int flags)
{
    while (n > 0) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t sent = sendmsg(q->fd, &msg, MSG_NOSIGNAL | flags);
        if (sent < 0) {
            if (interrupted_or_fail(q, "send", "no progress sending"))
                return -1;
            continue;
        }
        while (n > 0 && (size_t)sent >= iov->iov_len) {
            sent -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + sent;
            iov->iov_len -= (size_t)sent;
        }
    }
    return 0;
}

/* Send `len` bytes of a caller's buffer by reference: vmsplice maps its pages
 * into the queue's pipe and splice hands them to the socket, so the kernel
 * sends from them as its own initiator sends from a bio's pages, where sendmsg
 * would copy them first. The buffer must stay as it is until the command
 * completes, which the caller promises anyway. The caller holds send_lock. */
static int splice_all(nvt_queue *q, const char *data, size_t len)
{
    while (len > 0) {
        struct iovec iov = {(void *)data, len < q->pipe_size ? len : q->pipe_size};
        ssize_t in = vmsplice(q->pipe[1], &iov, 1, 0); /* the pipe is empty: some fits */
        if (in == 0)
            return fail(q, "vmsplice: nothing moved");
        if (in < 0) {
            if (interrupted_or_fail(q, "vmsplice", "no progress sending"))
                return -1;
            continue;
        }
        data += in;
        len -= (size_t)in;
        while (in > 0) {
            ssize_t out = splice(q->pipe[0], NULL, q->fd, NULL, (size_t)in, len ? SPLICE_F_MORE : 0);
            if (out > 0)
                in -= out;
            else if (out == 0)
                return fail(q, "splice: nothing moved");
            else if (interrupted_or_fail(q, "send", "no progress sending"))
                return -1;
        }
    }
    return 0;
}

/* Send a PDU: its header and padding in iov[0..n) (room for one more), then `len`
 * bytes of `data`, by reference from SPLICE_MIN bytes on. The caller holds send_lock. */
static int send_pdu(nvt_queue *q, struct iovec *iov, int n, const char *data, size_t len)
{
    if (len < SPLICE_MIN || q->pipe[0] < 0) {
        iov[n++] = (struct iovec){(void *)data, len};
        return send_all(q, iov, n, 0);
    }
    return send_all(q, iov, n, MSG_MORE) ? -1 : splice_all(q, data, len);
}

/* Send a PDU with send_lock held, unless the queue failed first. */
static int send_locked(nvt_queue *q, struct iovec *iov, int n, const char *data, size_t len)
{
    pthread_mutex_lock(&q->send_lock);
    int rc = failed(q) ? -1 : send_pdu(q, iov, n, data, len);
    pthread_mutex_unlock(&q->send_lock);
    return rc;
}

nvt_queue *nvt_open(int fd, unsigned depth, uint32_t maxh2cdata, unsigned cpda, int timeout_ms)
{
    nvt_queue *q = calloc(1, sizeof *q + depth * sizeof q->slots[0]);
    if (q == NULL)
        return NULL;
    q->fd = fd;
    q->depth = depth;
    q->maxh2cdata = maxh2cdata ? maxh2cdata : 1;
    q->cpda = cpda;
    q->timeout_ms = timeout_ms;
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = timeout_ms % 1000 * 1000};
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv)) {
        free(q);
        return NULL;
    }
    q->pipe[0] = q->pipe[1] = -1; /* without a pipe, data is copied into the socket */
    if (pipe2(q->pipe, O_CLOEXEC) == 0) {
        int size = fcntl(q->pipe[1], F_SETPIPE_SZ, SPLICE_PIPE); /* or what the system allows */
        size = size > 0 ? size : fcntl(q->pipe[1], F_GETPIPE_SZ);
        if (size > 0) {
            q->pipe_size = (size_t)size;
        } else {
            close(q->pipe[0]);
            close(q->pipe[1]);
            q->pipe[0] = q->pipe[1] = -1;
        }
    }
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->changed, NULL);
    pthread_mutex_init(&q->send_lock, NULL);
    return q;
}

void nvt_free(nvt_queue *q)
{
    if (q->pipe[0] >= 0) {
        close(q->pipe[0]);
        close(q->pipe[1]);
    }
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->changed);
    pthread_mutex_destroy(&q->send_lock);
    free(q);
}

const char *nvt_error(nvt_queue *q) { return q->error; }

int nvt_failed(nvt_queue *q) { return failed(q); }

void nvt_shutdown(nvt_queue *q)
{
    fail(q, "closed");
    pthread_mutex_lock(&q->send_lock); /* a sender in progress has woken and left */
    pthread_mutex_unlock(&q->send_lock);
    pthread_mutex_lock(&q->lock); /* and so has the receiver */
    while (q->receiving)
        pthread_cond_wait(&q->changed, &q->lock);
    pthread_mutex_unlock(&q->lock);
}

/* Read PDUs until some command completes (0) or the queue fails (-1). Called by
 * the one receiving thread, without the lock. */
static int receive_one(nvt_queue *q);

/* Receive for whoever needs it, or wait while another thread does; the lock held. */
static void take_turn(nvt_queue *q)
{
    if (q->receiving) {
        pthread_cond_wait(&q->changed, &q->lock);
        return;
    }
    q->receiving = 1;
    pthread_mutex_unlock(&q->lock);
    receive_one(q); /* a failure is in q->failed */
    pthread_mutex_lock(&q->lock);
    q->receiving = 0;
    pthread_cond_broadcast(&q->changed);
}

int nvt_submit(nvt_queue *q, nvt_command *command, const uint8_t *sqe, char *data_in,
               size_t in_len, const char *data_out, size_t out_len, int in_capsule)
{
    static const uint8_t padding[128];
    uint8_t head[CAPSULE_HLEN];
    size_t capsule_data = in_capsule ? out_len : 0;
    size_t align = (q->cpda + 1) * 4; /* the controller's data alignment, at most 128 */
    size_t pdo = capsule_data ? (CAPSULE_HLEN + align - 1) / align * align : 0;
    size_t plen = capsule_data ? pdo + capsule_data : CAPSULE_HLEN;
    size_t length = in_capsule ? out_len : data_in != NULL ? in_len : out_len;
    if (plen > UINT32_MAX || length > UINT32_MAX)
        return fail(q, "a command of %zu bytes", length);

    unsigned cid = q->depth;
    pthread_mutex_lock(&q->lock);
    while (!q->failed) {
        for (unsigned i = 0; i < q->depth && cid == q->depth; i++)
            if (q->slots[(q->next + i) % q->depth].command == NULL)
                cid = (q->next + i) % q->depth;
        if (cid < q->depth)
            break;
        take_turn(q); /* all in flight: settle some, as a waiter would */
    }
    int failed = q->failed;
    if (!failed) {
        *command = (nvt_command){0, 0, 0, 0};
        q->slots[cid] = (struct slot){command, data_in, in_len, data_out, out_len};
        q->next = cid + 1;
    }
    pthread_mutex_unlock(&q->lock);
    if (failed)
        return -1;

    head[0] = CAPSULE_CMD;
    head[1] = 0;
    head[2] = CAPSULE_HLEN;
    head[3] = (uint8_t)pdo;
    put32(head + 4, (uint32_t)plen);
    memcpy(head + COMMON, sqe, SQE);
    uint8_t *entry = head + COMMON;
    put16(entry + 2, (uint16_t)cid);
    memset(entry + 24, 0, 16); /* the SGL: address 0, length, type */
    put32(entry + 32, (uint32_t)length);
    entry[39] = in_capsule ? SGL_IN_CAPSULE : SGL_TRANSPORT;
    struct iovec iov[3] = {{head, sizeof head}, {(void *)padding, pdo ? pdo - CAPSULE_HLEN : 0}};
    return send_locked(q, iov, 2, data_out, capsule_data);
}

int nvt_wait(nvt_queue *q, nvt_command *command)
{
    pthread_mutex_lock(&q->lock);
    while (!command->done && !q->failed)
        take_turn(q);
    while (!command->done && q->receiving) /* failed: the receiver may be in our buffer yet */
        pthread_cond_wait(&q->changed, &q->lock);
    int status = command->done ? command->status : -1;
    pthread_mutex_unlock(&q->lock);
    return status;
}

/* nvt_submit and nvt_wait in one, for a command whose result dwords nobody needs. */
static int execute(nvt_queue *q, const uint8_t *sqe, char *data_in, size_t in_len,
                   const char *data_out, size_t out_len, int in_capsule)
{
    nvt_command command = {0, 0, 0, 0};
    /* A failed submit leaves the queue failed: the wait then says -1, once no
     * thread is in the buffers any more. */
    nvt_submit(q, &command, sqe, data_in, in_len, data_out, out_len, in_capsule);
    return nvt_wait(q, &command);
}

int nvt_rw(nvt_queue *q, int write, uint32_t nsid, uint64_t slba, uint32_t blocks, char *data,
           size_t len, int in_capsule)
{
    uint8_t sqe[SQE] = {write ? NVM_WRITE : NVM_READ, PSDT_SGL};
    put32(sqe + 4, nsid);
    put32(sqe + 40, (uint32_t)slba); /* SLBA: dwords 10 and 11 */
    put32(sqe + 44, (uint32_t)(slba >> 32));
    put32(sqe + 48, blocks - 1); /* NLB, zero-based */
    return write ? execute(q, sqe, NULL, 0, data, len, in_capsule)
                 : execute(q, sqe, data, len, NULL, 0, 0);
}

/* The slot of a command the controller names, or -1 (the queue failed) if none is in flight. */
static int slot_of(nvt_queue *q, uint16_t cid, struct slot *slot, const char *what)
{
    pthread_mutex_lock(&q->lock);
    int busy = cid < q->depth && q->slots[cid].command != NULL;
    if (busy)
        *slot = q->slots[cid];
    pthread_mutex_unlock(&q->lock);
    return busy ? 0 : fail(q, "%s for no command in flight (%u)", what, cid);
}

static void finish(nvt_queue *q, uint16_t cid, uint16_t status, uint64_t result)
{
    pthread_mutex_lock(&q->lock);
    *q->slots[cid].command = (nvt_command){1, cid, status, result};
    q->slots[cid].command = NULL; /* the id is free again, before its waiter has woken */
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
}

/* Answer an R2T: the bytes it asks for, in H2CData PDUs of at most MAXH2CDATA. */
static int answer_r2t(nvt_queue *q, const uint8_t *h)
{
    struct slot slot;
    uint16_t cid = get16(h + 8), ttag = get16(h + 10);
    uint64_t offset = get32(h + 12), end = offset + get32(h + 16);
    if (slot_of(q, cid, &slot, "R2T"))
        return -1;
    if (slot.out == NULL || end > slot.out_len || end == offset)
        return fail(q, "R2T for bytes %llu-%llu, which command %u does not have",
                    (unsigned long long)offset, (unsigned long long)end, cid);
    pthread_mutex_lock(&q->send_lock);
    int rc = failed(q) ? -1 : 0;
    while (rc == 0 && offset < end) {
        uint32_t n = (uint32_t)(end - offset < q->maxh2cdata ? end - offset : q->maxh2cdata);
        uint8_t head[HLEN] = {H2C_DATA, offset + n == end ? LAST_PDU : 0, HLEN, HLEN};
        put32(head + 4, HLEN + n);
        put16(head + 8, cid);
        put16(head + 10, ttag);
        put32(head + 12, (uint32_t)offset);
        put32(head + 16, n);
        struct iovec iov[2] = {{head, HLEN}};
        rc = send_pdu(q, iov, 1, slot.out + offset, n);
        offset += n;
    }
    pthread_mutex_unlock(&q->send_lock);
    return rc;
}

/* C2HData: its bytes go straight into the command's buffer. 1 if it completed the command. */
static int receive_data(nvt_queue *q, const uint8_t *h, uint32_t plen)
{
    struct slot slot;
    uint8_t skipped[256];
    uint16_t cid = get16(h + 8);
    uint64_t offset = get32(h + 12), length = get32(h + 16);
    size_t start = h[3] > HLEN ? h[3] : HLEN; /* the data offset (PDO) */
    if (plen > HLEN && (h[3] < HLEN || h[3] > plen))
        return fail(q, "C2HData: data offset %u", h[3]);
    if (slot_of(q, cid, &slot, "C2HData"))
        return -1;
    if (slot.in == NULL || plen < start || length != plen - start || offset + length > slot.in_len)
        return fail(q, "C2HData outside the buffer of command %u", cid);
    if (receive(q, skipped, start - HLEN) || receive(q, slot.in + offset, length))
        return -1;
    if (!(h[1] & SUCCESS))
        return 0;
    finish(q, cid, 0, 0);
    return 1;
}

static int receive_one(nvt_queue *q)
{
    for (;;) {
        uint8_t h[HLEN]; /* every PDU a controller sends after ICResp has a 24-byte header */
        if (failed(q) || receive(q, h, HLEN))
            return -1;
        uint8_t type = h[0], flags = h[1], hlen = h[2];
        uint32_t plen = get32(h + 4);
        if (hlen != HLEN)
            return fail(q, "PDU type %#x: header length %u", type, hlen);
        if (flags & (HDGST | DDGST))
            return fail(q, "PDU type %#x: a digest that was not negotiated", type);
        if (type != C2H_DATA && type != C2H_TERM_REQ && plen != HLEN)
            return fail(q, "PDU type %#x: length %u", type, plen);
        switch (type) {
        case CAPSULE_RESP: {
            struct slot slot;
            uint16_t cid = get16(h + 20);
            if (slot_of(q, cid, &slot, "CapsuleResp"))
                return -1;
            finish(q, cid, (get16(h + 22) >> 1) & 0x7FFF, get64(h + 8));
            return 0;
        }
        case C2H_DATA: {
            int rc = receive_data(q, h, plen);
            if (rc != 0)
                return rc < 0 ? -1 : 0;
            break;
        }
        case R2T:
            if (answer_r2t(q, h))
                return -1;
            break;
        case C2H_TERM_REQ:
            return fail(q, "the target ended the connection (fatal error status %#x)", get16(h + 8));
        default:
            return fail(q, "unexpected PDU type %#x", type);
        }
    }
}
