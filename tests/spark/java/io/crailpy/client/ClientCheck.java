package io.crailpy.client;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * Exercises the Java client against a running cluster: {@code ClientCheck host:port mode [args]}.
 * Prints {@code OK mode} and exits 0 when every check held; prints {@code FAIL mode: why} and
 * exits 1 on the first one that did not. tests/spark/test_java_client.py runs it.
 */
public final class ClientCheck {
    private Crailpy fs;
    private int bs;
    private String host;
    private int port;

    interface Action {
        void run() throws Exception;
    }

    public static void main(String[] args) {
        String mode = args.length > 1 ? args[1] : "?";
        try {
            ClientCheck c = new ClientCheck();
            if (!mode.equals("wire")) {
                c.host = args[0].substring(0, args[0].lastIndexOf(':'));
                c.port = Integer.parseInt(args[0].substring(args[0].lastIndexOf(':') + 1));
                c.fs = Crailpy.connect(args[0]);
                c.bs = c.fs.namenode().statfs().blockSize();
            }
            c.run(mode, Arrays.copyOfRange(args, Math.min(2, args.length), args.length));
            if (c.fs != null) {
                c.fs.close();
            }
        } catch (Throwable t) {
            System.out.println("FAIL " + mode + ": " + t);
            t.printStackTrace(System.out);
            System.exit(1);
        }
        System.out.println("OK " + mode);
        System.exit(0);
    }

    private void run(String mode, String[] args) throws Exception {
        switch (mode) {
            case "wire": wire(args[0]); break;
            case "sizes": sizes(); break;
            case "small-files": smallFiles(Integer.parseInt(args[0]), Integer.parseInt(args[1])); break;
            case "refill": refill(Integer.parseInt(args[0])); break;
            case "read-python": readPython(args); break;
            case "errors": errors(); break;
            case "abort": abort(); break;
            case "list": list(); break;
            case "concurrent": concurrent(); break;
            case "stale": stale(); break;
            case "rotate": rotate(); break;
            case "nvmf": nvmf(); break;
            default: throw new IllegalArgumentException("unknown mode " + mode);
        }
    }

    // ---- helpers ----

    /** The bytes every side writes for a file: they depend on the seed and the block index. */
    static byte[] pattern(long seed, int n) {
        byte[] out = new byte[n];
        for (int i = 0; i < n; i++) {
            out[i] = (byte) ((i * 2654435761L + seed * 97L) >>> 13);
        }
        return out;
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static void expect(Status status, String what, Action action) throws Exception {
        try {
            action.run();
        } catch (CrailpyException e) {
            check(e.status() == status, what + ": expected " + status + ", got " + e.status() + " (" + e.getMessage() + ")");
            return;
        }
        throw new AssertionError(what + ": expected " + status + ", but it succeeded");
    }

    /** Writes {@code data} to a new file in writes of varying sizes (1 byte to more than a block). */
    void write(String path, byte[] data, boolean overwrite) throws IOException {
        int[] steps = {1, 3, 7919, bs, bs + 5, 100_000};
        try (FileWriter w = fs.create(path, overwrite)) {
            int done = 0;
            for (int k = 0; done < data.length; k++) {
                int n = Math.min(steps[k % steps.length], data.length - done);
                if (n == 1) {
                    w.write(data[done]);
                } else {
                    w.write(data, done, n);
                }
                done += n;
                check(w.position() == done, path + ": position " + w.position() + " after " + done);
            }
        }
    }

    byte[] read(String path) throws IOException {
        try (FileReader r = fs.open(path)) {
            byte[] out = new byte[(int) r.size()];
            r.readFully(0, out, 0, out.length);
            return out;
        }
    }

    void waitFreed() throws Exception {
        long until = System.nanoTime() + 30_000_000_000L;
        while (true) {
            long freeing = 0;
            for (Namenode.ClassUsage c : fs.namenode().statfs().classes()) {
                freeing += c.freeing();
            }
            if (freeing == 0) {
                return;
            }
            check(System.nanoTime() < until, "freed bytes did not come back within 30 s");
            Thread.sleep(50);
        }
    }

    long used() throws IOException {
        long used = 0;
        for (Namenode.ClassUsage c : fs.namenode().statfs().classes()) {
            used += c.used();
        }
        return used;
    }

    // ---- modes ----

    /** The encoder and decoder against docs/protocol.md 9.1 and 9.3, the 3.2 checks, and a
     * reply the Python encoder made ({@code hex}: a LOOKUP reply; printed back decoded). */
    void wire(String hex) throws Exception {
        Wire.Encoder e = new Wire.Encoder().u32(64).str("/a");
        Frame.writeRequestHeader(e.array(), Op.LOOKUP, 1, e.size() - Frame.HEADER_SIZE);
        String lookup = HexFormat.of().formatHex(e.array(), 0, e.size());
        check(lookup.equals("11ca0403000000000100000000000000080000004000000002002f61"), "LOOKUP encodes as " + lookup);

        byte[] located = HexFormat.of().parseHex("11ca0403010000000100000000000000" + "62000000"
                + "0200000000000000" + "0100ff01" + "00001000" + "0500000000000000" + "00002a36fe9c9717"
                + "01000000" + "01000000" + "00000101" + "6523" + "0000" + "0000000000000000" + "0000" + "0000"
                + "0800" + "31302e302e302e35" + "01000000" + "01000000" + "0000300000000000" + "cdab3412" + "00000000"
                + "00000000");
        Frame.Header h = Frame.readHeader(Arrays.copyOf(located, Frame.HEADER_SIZE));
        check(h.isResponse() && h.opcode() == Op.LOOKUP && h.requestId() == 1 && h.length() == 98, "9.3 header " + h);
        String decoded = render(new Wire.Decoder(located, Frame.HEADER_SIZE, located.length, "Located"));
        String want = "info=NodeInfo[id=2, type=1, storageClass=0, locationClass=-1, committed=true, blockSize=1048576, "
                + "size=5, mtimeNs=1700000000000000000] datanodes=[DatanodeInfo[id=1, storageClass=0, locationClass=0, "
                + "transports=1, alive=true, port=9061, rdmaPort=0, rdmaAddress=0, nvmfPort=0, nvmfNqn=, host=10.0.0.5]] "
                + "blocks=[1:3145728:1234abcd] parts=[] data=";
        check(decoded.equals(want), "9.3 decodes as " + decoded);

        // 3.2: strict UTF-8, limits, trailing bytes, bad headers.
        expect(Status.PROTOCOL, "encoded surrogate", () -> decoder("0300eda080").str());
        expect(Status.PROTOCOL, "overlong /", () -> decoder("0200c0af").str());
        expect(Status.PROTOCOL, "string longer than the body", () -> decoder("05006162").str());
        expect(Status.PROTOCOL, "string over MAX_STR", () -> decoder("0110" + "61".repeat(4097)).str());
        expect(Status.PROTOCOL, "list count over the bytes left", () -> decoder("e8030000" + "00".repeat(32)).blocks());
        expect(Status.PROTOCOL, "list count over MAX_ITEMS", () -> decoder("a1860100").parts());
        expect(Status.PROTOCOL, "bytes longer than the body", () -> decoder("0500000061626364").bytes());
        expect(Status.PROTOCOL, "truncated u64", () -> decoder("01020304").u64());
        expect(Status.PROTOCOL, "trailing bytes", () -> {
            Wire.Decoder d = decoder("030100");
            d.u8();
            d.u8();
            d.end();
        });
        expect(Status.PROTOCOL, "bad magic", () -> Frame.readHeader(HexFormat.of().parseHex("11cb03010100000001000000000000000000000000")));
        expect(Status.VERSION, "version 2", () -> Frame.readHeader(HexFormat.of().parseHex("11ca020101000000010000000000000000000000")));
        expect(Status.PROTOCOL, "length over the limit", () -> Frame.readHeader(HexFormat.of().parseHex("11ca040101000000010000000000000001001004")));
        check(Frame.readHeader(HexFormat.of().parseHex("11ca040101000000010000000000000000001004")).length() == 68_157_440,
                "the largest frame length is refused");
        expect(Status.INVALID, "path over MAX_STR", () -> new Wire.Encoder().str("/" + "a".repeat(4096)));
        expect(Status.INVALID, "lone surrogate", () -> new Wire.Encoder().str("/a\ud800"));
        String nonAscii = HexFormat.of().formatHex(new Wire.Encoder().str("/é€𝄞").array(), Frame.HEADER_SIZE, Frame.HEADER_SIZE + 12);
        check(nonAscii.equals("0a002fc3a9e282acf09d849e"), "UTF-8 (not modified UTF-8): " + nonAscii);

        byte[] py = HexFormat.of().parseHex(hex);
        System.out.println("PY " + render(new Wire.Decoder(py, Frame.HEADER_SIZE, py.length, "Located")));
    }

    static Wire.Decoder decoder(String hex) {
        byte[] raw = HexFormat.of().parseHex(hex);
        return new Wire.Decoder(raw, 0, raw.length, "test");
    }

    static String render(Wire.Decoder d) throws CrailpyException {
        NodeInfo info = d.nodeInfo();
        List<DatanodeInfo> datanodes = d.datanodeInfos();
        List<String> blocks = new ArrayList<>();
        for (Block b : d.blocks()) {
            blocks.add(Integer.toUnsignedString(b.datanode()) + ":" + b.offset() + ":" + Integer.toHexString(b.key()));
        }
        List<Part> parts = d.parts();
        byte[] data = d.bytes();
        d.end();
        return "info=" + info + " datanodes=" + datanodes + " blocks=" + blocks + " parts=" + parts
                + " data=" + HexFormat.of().formatHex(data);
    }

    /** Files of 0, 1, block-1, block, block+1 and many blocks, written and read back in many ways;
     * they stay for the Python side to read. */
    /** {@code count} files of {@code size} bytes, each under a block, written and read back. */
    void smallFiles(int count, int size) throws Exception {
        fs.mkdirs("/small", -1);
        for (int i = 0; i < count; i++) {
            write("/small/" + i, pattern(i, size), false);
        }
        for (int i = 0; i < count; i++) {
            check(Arrays.equals(read("/small/" + i), pattern(i, size)), "/small/" + i + ": bytes read back differ");
        }
    }

    /** Fill {@code capacity} bytes, fail to write more, delete, and write it all again at once. */
    void refill(int capacity) throws Exception {
        byte[] data = pattern(7, capacity);
        write("/fill", data, false);
        expect(Status.NO_SPACE, "a write with nothing freeing", () -> write("/more", new byte[bs + 1], false));
        fs.delete("/fill", false);
        write("/again", data, false); // its allocations wait for the blocks freed a moment ago
        check(Arrays.equals(read("/again"), data), "/again: bytes read back differ");
    }

    void sizes() throws Exception {
        fs.mkdirs("/java", -1);
        int[] sizes = {0, 1, bs - 1, bs, bs + 1, 5 * bs + 123, 40 * bs + 7};
        for (int n : sizes) {
            String path = "/java/" + n;
            byte[] data = pattern(n, n);
            write(path, data, false);
            check(fs.stat(path).size() == n && fs.stat(path).isFile(), path + ": stat " + fs.stat(path));
            check(Arrays.equals(read(path), data), path + ": bytes read back differ");
            try (FileReader r = fs.open(path)) {
                check(r.size() == n, path + ": size " + r.size());
                // Ranges across every block boundary, and odd ranges, into byte[] and direct buffers.
                for (long b = bs; b < n; b += bs) {
                    int from = (int) Math.max(0, b - 17);
                    int len = (int) Math.min(n - from, 40);
                    byte[] dst = new byte[len + 6];
                    r.readFully(from, dst, 3, len);
                    check(Arrays.equals(Arrays.copyOfRange(dst, 3, 3 + len), Arrays.copyOfRange(data, from, from + len)),
                            path + ": range at " + from + " across block " + b / bs);
                    ByteBuffer direct = ByteBuffer.allocateDirect(len + 4);
                    direct.position(4);
                    r.readFully(from, direct);
                    check(direct.position() == 4, "readFully(ByteBuffer) moved the position");
                    byte[] got = new byte[len];
                    direct.get(got);
                    check(Arrays.equals(got, Arrays.copyOfRange(data, from, from + len)), path + ": direct read at " + from);
                }
                if (n > 2) {
                    byte[] mid = new byte[n - 2];
                    r.readAsync(1, mid, 0, n - 2).get();
                    check(Arrays.equals(mid, Arrays.copyOfRange(data, 1, n - 1)), path + ": readAsync of all but the ends");
                }
                r.readFully(n, new byte[0], 0, 0);
                expect(Status.OUT_OF_RANGE, path + ": read past the end", () -> r.readFully(n, new byte[1], 0, 1));
                expect(Status.OUT_OF_RANGE, path + ": read across the end", () -> r.readFully(Math.max(0, n - 1), new byte[2], 0, 2));
            }
        }
    }

    /** Files the Python client wrote as /python/{n} with pattern(n, n). */
    void readPython(String[] sizes) throws Exception {
        for (String s : sizes) {
            int n = Integer.parseInt(s);
            byte[] got = read("/python/" + n);
            check(Arrays.equals(got, pattern(n, n)), "/python/" + n + ": bytes differ from what Python wrote");
            if (n > 2) { // and a range inside the file, from position 1
                byte[] inner = new byte[n - 2];
                try (FileReader r = fs.open("/python/" + n)) {
                    r.readFully(1, inner, 0, inner.length);
                }
                check(Arrays.equals(inner, Arrays.copyOfRange(got, 1, n - 1)), "/python/" + n + ": a range differs");
            }
        }
    }

    void errors() throws Exception {
        expect(Status.NOT_FOUND, "open of a missing file", () -> fs.open("/nope/x"));
        expect(Status.NOT_FOUND, "stat of a missing file", () -> fs.stat("/nope"));
        fs.mkdirs("/e/sub", -1);
        fs.mkdirs("/e/sub", -1); // exists: fine
        check(fs.stat("/e/sub").isDirectory(), "mkdirs made no directory");
        byte[] first = pattern(1, 3 * bs);
        write("/e/f", first, false);
        expect(Status.EXISTS, "create without overwrite", () -> fs.create("/e/f", false));
        byte[] second = pattern(2, bs / 2);
        write("/e/f", second, true);
        check(Arrays.equals(read("/e/f"), second), "overwrite did not replace the bytes");
        expect(Status.WRONG_TYPE, "open of a directory", () -> fs.open("/e"));
        expect(Status.NOT_A_DIRECTORY, "create below a file", () -> fs.create("/e/f/x", false));
        expect(Status.INVALID, "relative path", () -> fs.create("e/g", false));
        expect(Status.INVALID, "path with ..", () -> fs.stat("/e/../e"));
        try (FileWriter w = fs.create("/e/busy", false)) {
            w.write(1);
            expect(Status.BUSY, "second writer of one name", () -> fs.create("/e/busy", false));
        }
        expect(Status.NOT_EMPTY, "delete of a non-empty directory", () -> fs.delete("/e", false));
        check(!fs.delete("/e/missing", false), "delete of a missing file said true");
        fs.namenode().rename("/e/busy", "/e/moved");
        check(Arrays.equals(read("/e/moved"), new byte[] {1}), "renamed file lost its byte");
        check(fs.delete("/e", true), "recursive delete said false");
        expect(Status.NOT_FOUND, "stat after delete", () -> fs.stat("/e/f"));
        expect(Status.UNKNOWN_OP, "READ sent to the namenode",
                () -> Connection.await(new Connection(host, port, "namenode", 2000, 10_000)
                        .read(1, 0, 0, ByteBuffer.allocate(1))));
    }

    void abort() throws Exception {
        fs.mkdirs("/a", -1);
        waitFreed();
        long before = used();
        FileWriter w = fs.create("/a/x", false);
        w.write(pattern(3, 3 * bs + 5));
        check(used() > before, "an open file with blocks uses no space");
        w.abort();
        expect(Status.NOT_FOUND, "stat of an aborted file", () -> fs.stat("/a/x"));
        check(fs.list("/a").isEmpty(), "the aborted file is listed");
        check(used() == before, "space used " + used() + " after abort, " + before + " before");
        w.close(); // after abort: nothing
        try {
            w.write(1);
            throw new AssertionError("write after abort succeeded");
        } catch (IOException expected) {
            // the writer is done
        }
        write("/a/x", new byte[] {7}, false); // the name is free again
        check(fs.stat("/a/x").size() == 1, "the name stayed reserved after abort");
    }

    /** More entries than one LIST page holds, created from several threads; then deleted. */
    void list() throws Exception {
        fs.mkdirs("/l", -1);
        int n = 1234;
        ExecutorService pool = Executors.newFixedThreadPool(8);
        List<Future<?>> done = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            String path = "/l/f" + i;
            int size = i % 3;
            done.add(pool.submit(() -> {
                write(path, pattern(size, size), false);
                return null;
            }));
        }
        for (Future<?> f : done) {
            f.get();
        }
        pool.shutdown();
        List<Entry> entries = fs.list("/l");
        Set<String> names = new HashSet<>();
        for (Entry e : entries) {
            names.add(e.name());
            check(e.info().isFile() && e.info().size() == Integer.parseInt(e.name().substring(1)) % 3,
                    "entry " + e);
        }
        check(entries.size() == n && names.size() == n, "listed " + entries.size() + " entries, " + names.size() + " names");
        check(fs.stat("/l").size() == n, "directory size " + fs.stat("/l").size());
        expect(Status.NOT_A_DIRECTORY, "list of a file", () -> fs.list("/l/f1"));
        check(fs.delete("/l/f0", false), "delete of a file said false");
        check(fs.list("/l").size() == n - 1, "delete did not remove one entry");
        check(fs.delete("/l", true), "recursive delete said false");
        expect(Status.NOT_FOUND, "list of a deleted directory", () -> fs.list("/l"));
    }

    /** Many threads writing and reading files over one client, and reading one shared file. */
    void concurrent() throws Exception {
        fs.mkdirs("/c", -1);
        int shared = 16 * bs + 999;
        byte[] sharedData = pattern(77, shared);
        write("/c/shared", sharedData, false);
        FileReader reader = fs.open("/c/shared");
        int threads = 16;
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        List<Future<?>> done = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            int id = t;
            done.add(pool.submit(() -> {
                Random random = new Random(id);
                for (int k = 0; k < 4; k++) {
                    String path = "/c/t" + id + "-" + k;
                    int size = random.nextInt(3 * bs);
                    byte[] data = pattern(id * 100 + k, size);
                    write(path, data, false);
                    check(Arrays.equals(read(path), data), path + ": bytes read back differ");
                    List<CompletableFuture<Void>> reads = new ArrayList<>();
                    List<byte[]> dsts = new ArrayList<>();
                    List<Integer> froms = new ArrayList<>();
                    for (int j = 0; j < 8; j++) {
                        int from = random.nextInt(shared);
                        int len = random.nextInt(Math.min(shared - from, 4 * bs) + 1);
                        byte[] dst = new byte[len];
                        dsts.add(dst);
                        froms.add(from);
                        reads.add(reader.readAsync(from, dst, 0, len));
                    }
                    for (int j = 0; j < reads.size(); j++) {
                        reads.get(j).get();
                        int from = froms.get(j);
                        check(Arrays.equals(dsts.get(j), Arrays.copyOfRange(sharedData, from, from + dsts.get(j).length)),
                                "shared file: range at " + from);
                    }
                    check(fs.delete(path, false), path + ": delete said false");
                }
                return null;
            }));
        }
        for (Future<?> f : done) {
            f.get();
        }
        pool.shutdown();
        check(fs.list("/c").size() == 1, "files left behind: " + fs.list("/c"));
    }

    /** A reader holding the locations of a deleted file whose blocks went to another file: its
     * READ is refused, the fresh lookup says NOT_FOUND, and no byte lands in its buffer. */
    void stale() throws Exception {
        fs.mkdirs("/s", -1);
        int size = 6 * bs + 10;
        write("/s/old", pattern(5, size), false);
        FileReader r = fs.open("/s/old");
        byte[] dst = new byte[size];
        r.readFully(0, dst, 0, size);
        check(Arrays.equals(dst, pattern(5, size)), "first read of /s/old");
        check(fs.delete("/s/old", false), "delete said false");
        waitFreed(); // the keys of its blocks' regions have changed
        write("/s/new", pattern(6, size), false);
        byte[] sentinel = new byte[size];
        new Random(1).nextBytes(sentinel);
        byte[] target = sentinel.clone();
        expect(Status.NOT_FOUND, "read of a deleted file", () -> r.readFully(0, target, 0, size));
        check(Arrays.equals(target, sentinel), "a refused read wrote into the buffer");
        check(Arrays.equals(read("/s/new"), pattern(6, size)), "/s/new was damaged");
    }

    /**
     * One key region per datanode (the cluster is started so): deleting a file changes the keys
     * of every other block. An open reader and an open writer whose locations carry the old keys
     * are refused (STALE), look their blocks up again (GET_BLOCKS) and succeed.
     */
    void rotate() throws Exception {
        fs.mkdirs("/r", -1);
        write("/r/victim", pattern(8, 4 * bs), false);
        int size = 3 * bs + 50;
        write("/r/kept", pattern(9, size), false);
        FileReader r = fs.open("/r/kept");
        List<Block> before = fs.namenode().lookup("/r/kept", 64).blocks();
        FileWriter w = fs.create("/r/written", false);
        byte[] data = pattern(10, 4 * bs + 100);
        w.write(data, 0, 3 * bs); // blocks 0 to 2 sent; block 3 allocated ahead, under the old key
        check(fs.delete("/r/victim", false), "delete said false");
        waitFreed();
        List<Block> after = fs.namenode().lookup("/r/kept", 64).blocks();
        for (int i = 0; i < before.size(); i++) {
            check(before.get(i).key() != after.get(i).key(), "block " + i + " kept its key: the test proves nothing");
        }
        byte[] got = new byte[size];
        r.readFully(0, got, 0, size);
        check(Arrays.equals(got, pattern(9, size)), "read with stale keys returned other bytes");
        w.write(data, 3 * bs, data.length - 3 * bs);
        w.close();
        check(Arrays.equals(read("/r/written"), data), "write with stale keys stored other bytes");
    }

    /** Blocks on an nvmf (NVMe/TCP only) datanode: a clear INVALID, and the file is not committed. */
    void nvmf() throws Exception {
        fs.mkdirs("/flash", fs.storageClass("flash"));
        FileWriter w = fs.create("/flash/x", false);
        w.write(pattern(1, 100));
        try {
            w.close();
            throw new AssertionError("a write to an nvmf datanode succeeded");
        } catch (CrailpyException e) {
            check(e.status() == Status.INVALID && e.getMessage().contains("NVMe/TCP only")
                    && !e.getMessage().contains("\n"), "unclear failure: " + e);
        }
        expect(Status.NOT_FOUND, "stat of the failed file", () -> fs.stat("/flash/x"));
    }
}
