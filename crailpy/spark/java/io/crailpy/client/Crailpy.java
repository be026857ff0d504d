package io.crailpy.client;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A crailpy client: one shared namenode connection, one connection per datanode, and the
 * file-level calls. Safe to share between threads; each {@link FileWriter} is used by one
 * thread at a time, a {@link FileReader} by any number.
 */
public final class Crailpy implements AutoCloseable {
    static final int CONNECT_TIMEOUT_MS = 10_000;
    /** A connection with requests in flight that receives nothing for this long is dropped. */
    static final long IO_TIMEOUT_MS = 60_000;

    private final Namenode namenode;
    private final Datanodes datanodes = new Datanodes(CONNECT_TIMEOUT_MS, IO_TIMEOUT_MS);
    private final ExecutorService executor;

    private Crailpy(Namenode namenode) {
        this.namenode = namenode;
        AtomicInteger threads = new AtomicInteger();
        this.executor = Executors.newCachedThreadPool(r -> {
            Thread t = new Thread(r, "crailpy-callback-" + threads.incrementAndGet());
            t.setDaemon(true);
            return t;
        });
    }

    /** Connects to the namenode at {@code host:port} ({@code [v6]:port} too), PINGs it and checks
     * that it is a namenode of protocol version 3. */
    public static Crailpy connect(String namenodeHostPort) throws IOException {
        int colon = namenodeHostPort.lastIndexOf(':');
        if (colon <= 0) {
            throw new CrailpyException(Status.INVALID, "namenode address is host:port, not " + namenodeHostPort);
        }
        String host = namenodeHostPort.substring(0, colon);
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        int port;
        try {
            port = Integer.parseInt(namenodeHostPort.substring(colon + 1));
        } catch (NumberFormatException e) {
            throw new CrailpyException(Status.INVALID, "namenode address is host:port, not " + namenodeHostPort);
        }
        Namenode namenode = new Namenode(host, port, CONNECT_TIMEOUT_MS, IO_TIMEOUT_MS);
        try {
            Namenode.Pong pong = namenode.ping();
            if (pong.role() != 0) {
                throw new CrailpyException(Status.INVALID, namenodeHostPort + " is a datanode, not a namenode");
            }
            if (pong.serverVersion() != Frame.VERSION) {
                throw new CrailpyException(Status.VERSION, "namenode speaks protocol version "
                        + pong.serverVersion() + "; this client speaks " + Frame.VERSION);
            }
        } catch (IOException | RuntimeException e) {
            namenode.close();
            throw e;
        }
        return new Crailpy(namenode);
    }

    /** The shared namenode connection, for calls this class does not wrap. */
    public Namenode namenode() {
        return namenode;
    }

    /** The index of the storage class called {@code name} (e.g. "dram"), from STATFS. */
    public int storageClass(String name) throws IOException {
        for (Namenode.ClassUsage c : namenode.statfs().classes()) {
            if (c.name().equals(name)) {
                return c.storageClass();
            }
        }
        throw new CrailpyException(Status.INVALID, "no storage class called " + name);
    }

    /** A directory and its missing parents; an existing directory is fine. {@code storageClass}
     * -1 inherits the parent's; files created below inherit the directory's. */
    public void mkdirs(String path, int storageClass) throws IOException {
        namenode.create(NodeInfo.DIRECTORY, storageClass, Namenode.ANY_CLASS,
                Namenode.PARENTS | Namenode.EXIST_OK, 0, path);
    }

    /** A writer for a new file, visible once the writer closes; {@code overwrite} replaces a file
     * of that name at that moment (otherwise an existing one is {@code EXISTS}). */
    public FileWriter create(String path, boolean overwrite) throws IOException {
        Namenode.Created created = namenode.create(NodeInfo.FILE, Namenode.ANY_CLASS, Namenode.ANY_CLASS,
                overwrite ? Namenode.OVERWRITE : 0, 0, path);
        return new FileWriter(this, path, created);
    }

    /** A reader of the committed file at {@code path}; anything else is {@code WRONG_TYPE}. */
    public FileReader open(String path) throws IOException {
        Namenode.Located located = namenode.lookup(path, FileReader.LOOKUP_BLOCKS);
        if (!located.info().isFile()) {
            throw new CrailpyException(Status.WRONG_TYPE, path + " is a " + located.info().typeName() + ", not a file");
        }
        return new FileReader(this, path, located);
    }

    /** Deletes {@code path}; false if there was nothing to delete. */
    public boolean delete(String path, boolean recursive) throws IOException {
        try {
            namenode.delete(path, recursive);
            return true;
        } catch (CrailpyException e) {
            if (e.status() == Status.NOT_FOUND) {
                return false;
            }
            throw e;
        }
    }

    /** Every entry of a directory or table, in the namenode's (insertion) order. */
    public List<Entry> list(String path) throws IOException {
        List<Entry> out = new ArrayList<>();
        while (true) {
            Namenode.Listing page = namenode.list(path, out.size(), Namenode.MAX_ENTRIES_PER_REPLY);
            out.addAll(page.entries());
            if (!page.more()) {
                return out;
            }
        }
    }

    public NodeInfo stat(String path) throws IOException {
        return namenode.lookup(path, 0).info();
    }

    /**
     * Closes every connection: requests in flight fail, and files being written are aborted.
     * The callback threads are not stopped (a transfer failing now still needs one to report);
     * being daemons of a cached pool, they end when idle.
     */
    @Override
    public void close() {
        namenode.close();
        datanodes.close();
    }

    Datanodes datanodes() {
        return datanodes;
    }

    ExecutorService executor() {
        return executor;
    }
}
