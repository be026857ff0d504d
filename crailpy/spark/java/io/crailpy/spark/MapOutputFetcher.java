package io.crailpy.spark;

import java.io.IOException;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import org.apache.spark.shuffle.FetchFailedException;
import org.apache.spark.shuffle.ShuffleReadMetricsReporter;
import org.apache.spark.storage.BlockId;
import org.apache.spark.storage.BlockManagerId;
import org.apache.spark.storage.ShuffleBlockId;

/**
 * Fetches a reduce task's ranges of map outputs from crailpy, several at once on the
 * executor's fetch pool and at most {@code maxBytesInFlight} bytes ahead of the reader (one
 * range larger than that goes alone), and hands them over in order, one partition at a time.
 * A map output that cannot be read becomes a FetchFailedException naming it, so Spark re-runs
 * the map task that made it.
 */
final class MapOutputFetcher {
    /** One map output to read: its location (LocatedShuffleWriter) and the partitions wanted. */
    static final class Wanted {
        final BlockManagerId location;
        final long mapTaskId;
        final int mapIndex;
        final List<Integer> partitions = new ArrayList<>();
        long estimate;  // from the map status: approximate, good enough to bound memory

        Wanted(BlockManagerId location, long mapTaskId, int mapIndex) {
            this.location = location;
            this.mapTaskId = mapTaskId;
            this.mapIndex = mapIndex;
        }

        void add(int partition, long size) {
            partitions.add(partition);
            estimate += size;
        }
    }

    /** One partition's bytes within a fetched range. */
    record Partition(BlockId blockId, byte[] bytes, int offset, int length) {}

    private final ShuffleConf conf;
    private final String appId;
    private final int shuffleId;
    private final int partitions;
    private final List<Wanted> wanted;
    private final ShuffleReadMetricsReporter metrics;
    private final ExecutorService pool;
    private final Deque<Future<List<Partition>>> inFlight = new ArrayDeque<>();
    private final Deque<Partition> ready = new ArrayDeque<>();
    private int nextToFetch;
    private int nextToHand;
    private long bytesInFlight;

    MapOutputFetcher(ShuffleConf conf, String appId, int shuffleId, int partitions, List<Wanted> wanted,
                     ShuffleReadMetricsReporter metrics) {
        this.conf = conf;
        this.appId = appId;
        this.shuffleId = shuffleId;
        this.partitions = partitions;
        this.wanted = wanted;
        this.metrics = metrics;
        this.pool = Clients.fetchPool(conf);
        startFetches();
    }

    ShuffleReadMetricsReporter metrics() {
        return metrics;
    }

    /** The next partition's bytes, or null at the end. */
    Partition next() {
        while (ready.isEmpty()) {
            if (inFlight.isEmpty()) {
                return null;
            }
            Wanted output = wanted.get(nextToHand++);
            long started = System.nanoTime();
            try {
                ready.addAll(inFlight.removeFirst().get());
            } catch (ExecutionException e) {
                throw fetchFailed(output, e.getCause());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw fetchFailed(output, e);
            } finally {
                metrics.incFetchWaitTime((System.nanoTime() - started) / 1_000_000);
                bytesInFlight -= output.estimate;
            }
            startFetches();
        }
        return ready.removeFirst();
    }

    void close() {
        inFlight.forEach(future -> future.cancel(true));
        inFlight.clear();
        ready.clear();
    }

    private void startFetches() {
        while (nextToFetch < wanted.size()) {
            Wanted output = wanted.get(nextToFetch);
            if (!inFlight.isEmpty() && bytesInFlight + output.estimate > conf.maxBytesInFlight) {
                return;
            }
            nextToFetch++;
            bytesInFlight += output.estimate;
            inFlight.addLast(pool.submit(() -> fetch(output)));
        }
    }

    /** Read the wanted partitions' bytes in one range, after their index entries (MapOutputIndexes). */
    private List<Partition> fetch(Wanted output) throws IOException {
        String path = conf.mapFile(appId, shuffleId, output.mapTaskId);
        int first = output.partitions.get(0);
        int last = output.partitions.get(output.partitions.size() - 1);
        try {
            MapOutputIndexes.Index index = MapOutputIndexes.get(conf, path, partitions, first, last);
            long base = index.start(first);
            long length = index.start(last + 1) - base;
            if (length > Integer.MAX_VALUE - 16) {
                throw new IOException(path + ": partitions " + first + " to " + last + " hold " + length
                    + " bytes, more than one fetch can hold (2 GiB); use more partitions");
            }
            byte[] bytes = new byte[(int) length];
            index.file().readFully(base, bytes, 0, bytes.length);
            metrics.incRemoteBytesRead(length);
            metrics.incRemoteBlocksFetched(output.partitions.size());
            List<Partition> out = new ArrayList<>(output.partitions.size());
            for (int partition : output.partitions) {
                int start = (int) (index.start(partition) - base);
                int end = (int) (index.start(partition + 1) - base);
                if (end > start) {
                    out.add(new Partition(new ShuffleBlockId(shuffleId, output.mapTaskId, partition),
                        bytes, start, end - start));
                }
            }
            return out;
        } catch (IllegalStateException e) {  // a corrupt index (MapFile.decodeOffsets)
            MapOutputIndexes.forget(path);
            throw new IOException(path + ": " + e.getMessage(), e);
        } catch (IOException | RuntimeException e) {
            MapOutputIndexes.forget(path);
            throw e;
        }
    }

    private RuntimeException fetchFailed(Wanted output, Throwable cause) {
        String message = "crailpy shuffle: map output " + conf.mapFile(appId, shuffleId, output.mapTaskId)
            + " cannot be read: " + cause;
        return sneaky(new FetchFailedException(output.location, shuffleId, output.mapTaskId, output.mapIndex,
            output.partitions.get(0), message, cause));
    }

    /** FetchFailedException is checked in Java's eyes; Spark's iterators throw it unchecked. */
    @SuppressWarnings("unchecked")
    private static <E extends Throwable> RuntimeException sneaky(Throwable e) throws E {
        throw (E) e;
    }
}
