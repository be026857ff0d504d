package io.crailpy.client;

import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The body encoding of docs/protocol.md sections 3 and 4: little-endian scalars, u16-prefixed
 * strict UTF-8 strings, u32-prefixed bytes and lists, and the shared records. The decoder makes the
 * receiver checks of 3.2 before it allocates anything, so a hostile or broken peer costs a
 * {@code PROTOCOL} error, never a huge allocation or a misread field. No I/O here.
 */
final class Wire {
    static final int MAX_STR = 4096;
    static final int MAX_ITEMS = 100_000;

    static final int NODE_INFO_SIZE = 32;
    static final int DATANODE_INFO_MIN = 26;
    static final int BLOCK_SIZE = 16;
    static final int PART_SIZE = 16;
    static final int ENTRY_MIN = 34;
    static final int CLASS_USAGE_MIN = 27;
    static final int DATANODE_USAGE_MIN = 42;

    private Wire() {
    }

    /** Builds one request frame: room for the 20-byte header, then the body fields in order. */
    static final class Encoder {
        private byte[] buf = new byte[64];
        private int size = Frame.HEADER_SIZE;

        private void ensure(int more) {
            if (size + more > buf.length) {
                buf = Arrays.copyOf(buf, Math.max(buf.length * 2, size + more));
            }
        }

        Encoder u8(int v) {
            ensure(1);
            buf[size++] = (byte) v;
            return this;
        }

        /** A signed byte (location and storage class; -1 is 0xFF). */
        Encoder i8(int v) {
            return u8(v);
        }

        Encoder u16(int v) {
            ensure(2);
            buf[size++] = (byte) v;
            buf[size++] = (byte) (v >>> 8);
            return this;
        }

        Encoder u32(int v) {
            ensure(4);
            for (int i = 0; i < 4; i++) {
                buf[size++] = (byte) (v >>> (8 * i));
            }
            return this;
        }

        Encoder u64(long v) {
            ensure(8);
            for (int i = 0; i < 8; i++) {
                buf[size++] = (byte) (v >>> (8 * i));
            }
            return this;
        }

        /** Standard UTF-8 (not Java's modified form); a lone surrogate or over MAX_STR bytes is INVALID. */
        Encoder str(String s) throws CrailpyException {
            ByteBuffer raw;
            try {
                raw = StandardCharsets.UTF_8.newEncoder()
                        .onMalformedInput(CodingErrorAction.REPORT)
                        .onUnmappableCharacter(CodingErrorAction.REPORT)
                        .encode(CharBuffer.wrap(s));
            } catch (CharacterCodingException e) {
                throw new CrailpyException(Status.INVALID, "not valid Unicode (lone surrogate): " + s);
            }
            int n = raw.remaining();
            if (n > MAX_STR) {
                throw new CrailpyException(Status.INVALID, "string of " + n + " bytes; the limit is " + MAX_STR);
            }
            u16(n);
            ensure(n);
            raw.get(buf, size, n);
            size += n;
            return this;
        }

        /** The frame so far: header room and body. */
        byte[] array() {
            return buf;
        }

        /** Bytes of header room and body. */
        int size() {
            return size;
        }
    }

    /** Reads one body, checking every length against the limits and the bytes left. */
    static final class Decoder {
        private final byte[] buf;
        private int pos;
        private final int end;
        private final String what;

        /** {@code what} names the message in errors. */
        Decoder(byte[] buf, int pos, int end, String what) {
            this.buf = buf;
            this.pos = pos;
            this.end = end;
            this.what = what;
        }

        private CrailpyException bad(String message) {
            return new CrailpyException(Status.PROTOCOL, what + ": " + message);
        }

        private void need(int n) throws CrailpyException {
            if (end - pos < n) {
                throw bad("truncated");
            }
        }

        int u8() throws CrailpyException {
            need(1);
            return buf[pos++] & 0xFF;
        }

        int i8() throws CrailpyException {
            need(1);
            return buf[pos++];
        }

        int u16() throws CrailpyException {
            need(2);
            int v = (buf[pos] & 0xFF) | (buf[pos + 1] & 0xFF) << 8;
            pos += 2;
            return v;
        }

        /** A u32 as the int with the same bits (keys, ids); widen with {@code & 0xFFFFFFFFL}. */
        int u32() throws CrailpyException {
            need(4);
            int v = 0;
            for (int i = 0; i < 4; i++) {
                v |= (buf[pos + i] & 0xFF) << (8 * i);
            }
            pos += 4;
            return v;
        }

        long u64() throws CrailpyException {
            need(8);
            long v = 0;
            for (int i = 0; i < 8; i++) {
                v |= (buf[pos + i] & 0xFFL) << (8 * i);
            }
            pos += 8;
            return v;
        }

        /** Strict UTF-8: invalid sequences, encoded surrogates and overlong forms are PROTOCOL. */
        String str() throws CrailpyException {
            int n = u16();
            if (n > MAX_STR || n > end - pos) {
                throw bad("string of " + n + " bytes with " + (end - pos) + " left");
            }
            try {
                String s = StandardCharsets.UTF_8.newDecoder()
                        .onMalformedInput(CodingErrorAction.REPORT)
                        .onUnmappableCharacter(CodingErrorAction.REPORT)
                        .decode(ByteBuffer.wrap(buf, pos, n)).toString();
                pos += n;
                return s;
            } catch (CharacterCodingException e) {
                throw bad("a string is not UTF-8");
            }
        }

        /** u32-prefixed bytes, refused before anything is allocated if the body cannot hold them. */
        byte[] bytes() throws CrailpyException {
            long n = u32() & 0xFFFFFFFFL;
            if (n > end - pos) {
                throw bad(n + " bytes with " + (end - pos) + " left");
            }
            byte[] out = Arrays.copyOfRange(buf, pos, pos + (int) n);
            pos += (int) n;
            return out;
        }

        /** A list count, refused before anything is built if the bytes left cannot hold it. */
        int count(int minSize) throws CrailpyException {
            long c = u32() & 0xFFFFFFFFL;
            if (c > MAX_ITEMS || c * minSize > end - pos) {
                throw bad("list of " + c + " items with " + (end - pos) + " bytes left");
            }
            return (int) c;
        }

        /** Rule 4 of 3.2: the body must be consumed exactly. */
        void end() throws CrailpyException {
            if (pos != end) {
                throw bad((end - pos) + " trailing bytes");
            }
        }

        NodeInfo nodeInfo() throws CrailpyException {
            return new NodeInfo(u64(), u8(), u8(), i8(), u8() != 0, u32(), u64(), u64());
        }

        DatanodeInfo datanodeInfo() throws CrailpyException {
            return new DatanodeInfo(u32(), u8(), i8(), u8(), u8() != 0, u16(), u16(), u64(), u16(), str(),
                    str());
        }

        Block block() throws CrailpyException {
            return new Block(u32(), u64(), u32());
        }

        Part part() throws CrailpyException {
            return new Part(u64(), u64());
        }

        Entry entry() throws CrailpyException {
            return new Entry(str(), nodeInfo());
        }

        List<DatanodeInfo> datanodeInfos() throws CrailpyException {
            int n = count(DATANODE_INFO_MIN);
            List<DatanodeInfo> out = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                out.add(datanodeInfo());
            }
            return out;
        }

        List<Block> blocks() throws CrailpyException {
            int n = count(BLOCK_SIZE);
            List<Block> out = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                out.add(block());
            }
            return out;
        }

        List<Part> parts() throws CrailpyException {
            int n = count(PART_SIZE);
            List<Part> out = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                out.add(part());
            }
            return out;
        }

        List<Entry> entries() throws CrailpyException {
            int n = count(ENTRY_MIN);
            List<Entry> out = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                out.add(entry());
            }
            return out;
        }
    }
}
