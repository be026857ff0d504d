package io.crailpy.client;

/**
 * The status codes of a response header (docs/protocol.md 6.1, {@code crailpy/errors.py}),
 * so that callers can tell a missing file from an existing one without parsing messages.
 */
public enum Status {
    OK(0), PROTOCOL(1), VERSION(2), UNKNOWN_OP(3), NOT_FOUND(4), EXISTS(5), NOT_A_DIRECTORY(6),
    IS_A_DIRECTORY(7), NOT_EMPTY(8), NO_SPACE(9), INVALID(10), BUSY(11), BLOCK_LOST(12), STALE(13),
    OUT_OF_RANGE(14), WRONG_TYPE(15), INTERNAL(16);

    private static final Status[] BY_CODE = values();

    private final int code;

    Status(int code) {
        this.code = code;
    }

    /** The code carried on the wire. */
    public int code() {
        return code;
    }

    /** The status of a wire code; a code this client does not know is {@code INTERNAL}, as in Python. */
    public static Status of(int code) {
        return code >= 0 && code < BY_CODE.length ? BY_CODE[code] : INTERNAL;
    }
}
