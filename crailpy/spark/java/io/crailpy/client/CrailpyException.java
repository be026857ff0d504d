package io.crailpy.client;

import java.io.IOException;

/**
 * Every failure of this client: an error reply from a server, a malformed frame, or a lost
 * connection. It is an {@link IOException} so that stream code handles it as any I/O failure,
 * and it carries the {@link Status} so that callers can react to a particular cause.
 */
public class CrailpyException extends IOException {
    private static final long serialVersionUID = 1L;

    private final Status status;

    public CrailpyException(Status status, String message) {
        super(message);
        this.status = status;
    }

    public CrailpyException(Status status, String message, Throwable cause) {
        super(message, cause);
        this.status = status;
    }

    public Status status() {
        return status;
    }

    /** The exception for an error reply with wire status {@code code}. */
    static CrailpyException fromReply(int code, String message) {
        Status status = Status.of(code);
        if (status == Status.BLOCK_LOST) {
            return new BlockLostException(message);
        }
        if (status.code() != code) {
            message = "status " + code + ": " + message;
        }
        return new CrailpyException(status, message);
    }
}
