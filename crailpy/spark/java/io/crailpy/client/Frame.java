package io.crailpy.client;

/**
 * The 20-byte frame header of docs/protocol.md section 2 ({@code <HBBHHQI}): writing it in front
 * of a request, and reading and checking it (rule 1 of 3.2) before anything is allocated for
 * the frame it announces.
 */
final class Frame {
    static final int MAGIC = 0xCA11;
    static final int VERSION = 4;
    static final int HEADER_SIZE = 20;
    static final int RESPONSE = 0x1;
    static final int MAX_BODY = 1 << 20;
    static final int MAX_DATA = 64 << 20;

    private Frame() {
    }

    /** A decoded header; {@code length} (u32) is at most MAX_BODY + MAX_DATA, so it fits an int. */
    record Header(int opcode, int flags, int status, long requestId, int length) {
        boolean isResponse() {
            return (flags & RESPONSE) != 0;
        }
    }

    /** Writes a request header into the first 20 bytes of {@code frame}. */
    static void writeRequestHeader(byte[] frame, int opcode, long requestId, int length) {
        frame[0] = (byte) MAGIC;
        frame[1] = (byte) (MAGIC >>> 8);
        frame[2] = (byte) VERSION;
        frame[3] = (byte) opcode;
        frame[4] = 0; // flags: a request
        frame[5] = 0;
        frame[6] = 0; // status: ignored in requests
        frame[7] = 0;
        for (int i = 0; i < 8; i++) {
            frame[8 + i] = (byte) (requestId >>> (8 * i));
        }
        for (int i = 0; i < 4; i++) {
            frame[16 + i] = (byte) (length >>> (8 * i));
        }
    }

    /** Parses and checks magic, version and length, in that order. */
    static Header readHeader(byte[] raw) throws CrailpyException {
        Wire.Decoder d = new Wire.Decoder(raw, 0, HEADER_SIZE, "frame header");
        int magic = d.u16();
        int version = d.u8();
        int opcode = d.u8();
        int flags = d.u16();
        int status = d.u16();
        long requestId = d.u64();
        long length = d.u32() & 0xFFFFFFFFL;
        if (magic != MAGIC) {
            throw new CrailpyException(Status.PROTOCOL, String.format("bad magic 0x%04x", magic));
        }
        if (version != VERSION) {
            throw new CrailpyException(Status.VERSION,
                    "peer speaks protocol version " + version + "; this side speaks " + VERSION);
        }
        if (length > MAX_BODY + MAX_DATA) {
            throw new CrailpyException(Status.PROTOCOL, "frame length " + length + " is over the limit");
        }
        return new Header(opcode, flags, status, requestId, (int) length);
    }
}
