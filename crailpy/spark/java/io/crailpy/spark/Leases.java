package io.crailpy.spark;

import io.crailpy.client.CrailpyException;
import io.crailpy.client.Entry;
import io.crailpy.client.FileReader;
import io.crailpy.client.FileWriter;
import io.crailpy.client.NodeInfo;
import io.crailpy.client.Status;
import io.crailpy.client.Crailpy;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Leases on application directories. A driver rewrites {@code <root>/<appId>/_lease} (its
 * content: the lease in seconds) at a third of the lease; the namenode stamps each commit
 * with its own clock, so drivers on different hosts compare times on one clock. Whoever
 * renews also deletes the directories whose lease ran out: a driver that died leaves its
 * shuffles for at most one lease after another crailpy-shuffle driver comes by.
 */
final class Leases {
    static final String LEASE = "_lease";
    private static final Logger LOG = LoggerFactory.getLogger(Leases.class);

    private final Crailpy client;
    private final ShuffleConf conf;

    Leases(Crailpy client, ShuffleConf conf) {
        this.client = client;
        this.conf = conf;
    }

    void renewAndReap(String appId) throws IOException {
        String lease = conf.appDir(appId) + "/" + LEASE;
        FileWriter out = client.create(lease, true);
        try {
            out.write(Long.toString(conf.leaseSeconds).getBytes(StandardCharsets.US_ASCII));
            out.close();
        } catch (IOException | RuntimeException e) {
            out.abort();  // or the open lease file would hold its name (BUSY) from every renewal
            throw e;
        }
        long now = out.committed().mtimeNs();  // the namenode's clock, just now
        for (Entry entry : client.list(conf.root)) {
            String dir = conf.root + "/" + entry.name();
            if (entry.info().isDirectory() && !entry.name().equals(appId) && expired(dir, entry.info(), now)) {
                LOG.info("crailpy shuffle: the lease of {} ran out; deleting its shuffle data", entry.name());
                client.delete(dir, true);
            }
        }
    }

    /** A directory without a lease (its driver died before writing one) counts from its own mtime. */
    private boolean expired(String dir, NodeInfo info, long now) throws IOException {
        long stamp = info.mtimeNs();
        long seconds = conf.leaseSeconds;
        try (FileReader in = client.open(dir + "/" + LEASE)) {
            byte[] text = new byte[(int) Math.min(in.size(), 20)];
            in.readFully(0, text, 0, text.length);
            stamp = in.info().mtimeNs();
            seconds = Long.parseLong(new String(text, StandardCharsets.US_ASCII).trim());
        } catch (CrailpyException e) {
            if (e.status() != Status.NOT_FOUND) {
                throw e;
            }
        } catch (NumberFormatException e) {
            LOG.warn("crailpy shuffle: unreadable lease in {}; using {} s", dir, seconds);
        }
        return now - stamp > seconds * 1_000_000_000L;
    }
}
