/* crailpy's NVMe/TCP queue engine: the data path of the userspace initiator.
 *
 * One queue is one NVMe/TCP connection after ICReq/ICResp. Python builds
 * submission queue entries; this engine gives them ids, sends the capsules,
 * answers R2Ts with H2CData, receives C2HData straight into each command's
 * buffer and settles completions, all with the GIL released (docs/nvmf.md).
 * Any PDU that breaks the rules fails the queue for good: its message is in
 * nvt_error, and the socket is shut down so that no thread waits on it.
 *
 * This header is also the cffi declaration: it holds only what cffi parses.
 */

typedef struct nvt_queue nvt_queue;

/* One command, in the caller's memory: the engine fills it in when the command
 * completes, so that its id is free at once, before its waiter has woken. */
typedef struct {
    int done;
    uint16_t cid;    /* the id it had */
    uint16_t status; /* status code type << 8 | status code */
    uint64_t result; /* command specific, dwords 0 and 1 */
} nvt_command;

/* A queue over the connected socket `fd` (Python keeps owning it), with ids
 * 0..depth-1 and the controller's MAXH2CDATA and CPDA. The socket is made
 * blocking, with `timeout_ms` as its send and receive timeouts: a wait is then
 * one system call, where polling a non-blocking socket took several per PDU.
 * NULL if out of memory or the socket refuses those settings. */
nvt_queue *nvt_open(int fd, unsigned depth, uint32_t maxh2cdata, unsigned cpda, int timeout_ms);
void nvt_free(nvt_queue *q);

/* Send `command`: the 64-byte entry `sqe`, whose id and SGL are filled in
 * here. `data_in` receives C2HData; `data_out` goes in the capsule when
 * `in_capsule`, else on R2T, from 64 KiB on straight from its pages (vmsplice
 * and splice, not copied). `command` and both buffers stay untouched by the
 * caller until nvt_wait returns. While `depth` commands are in flight this
 * waits for one to complete. 0, or -1 with the queue failed. */
int nvt_submit(nvt_queue *q, nvt_command *command, const uint8_t *sqe, char *data_in,
               size_t in_len, const char *data_out, size_t out_len, int in_capsule);

/* Wait until `command` completes: its status. Whichever thread waits first
 * reads the socket for all; the others sleep until it has settled their
 * commands or left. -1 if the queue failed; then no thread writes into this
 * command's buffers any more. */
int nvt_wait(nvt_queue *q, nvt_command *command);

/* nvt_submit and nvt_wait in one call of a Read (or with `write` a Write) of
 * `blocks` blocks of namespace `nsid` from `slba`, its entry built here: `data`
 * receives or holds `len` bytes. For the initiator's one I/O at a time: one
 * crossing into C per I/O, and no entry or command record for Python to make.
 * The status, or -1. */
int nvt_rw(nvt_queue *q, int write, uint32_t nsid, uint64_t slba, uint32_t blocks, char *data,
           size_t len, int in_capsule);

/* Fail the queue and wake every thread in it; on return no thread uses the
 * socket, which may then be closed. */
void nvt_shutdown(nvt_queue *q);

/* Whether the queue failed, and why ("" while it has not). */
int nvt_failed(nvt_queue *q);
const char *nvt_error(nvt_queue *q);
