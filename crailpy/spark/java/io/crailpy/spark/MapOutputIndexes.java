package io.crailpy.spark;

import io.crailpy.client.FileReader;
import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The map outputs an executor has opened, with their whole index, so that its later reduce
 * tasks read just their partitions' bytes: one round trip per map output instead of three
 * (LOOKUP, the index entries, the bytes). Map outputs never change once committed; one that
 * is deleted or lost fails the read, and the fetcher forgets it. Only indexes of up to
 * {@link #MAX_PARTITIONS} partitions are kept (at most 8 KiB each, {@link #ENTRIES} of them);
 * larger ones are read a slice at a time.
 */
final class MapOutputIndexes {
    static final int MAX_PARTITIONS = 1024;
    static final int ENTRIES = 2048;

    /** A map output's reader and the offsets of partitions {@code first} on. */
    record Index(FileReader file, int first, long[] offsets) {
        long start(int partition) {
            return offsets[partition - first];
        }
    }

    private static final Map<String, Index> CACHE = new LinkedHashMap<>(64, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<String, Index> eldest) {
            return size() > ENTRIES;
        }
    };

    private MapOutputIndexes() {}

    /** The index entries of partitions {@code first .. last + 1} of the map output at {@code path}. */
    static Index get(ShuffleConf conf, String path, int partitions, int first, int last) throws IOException {
        boolean kept = partitions <= MAX_PARTITIONS;
        if (kept) {
            synchronized (CACHE) {
                Index index = CACHE.get(path);
                if (index != null) {
                    return index;
                }
            }
            first = 0;
            last = partitions - 1;
        }
        FileReader file = Clients.get(conf).open(path);
        byte[] raw = new byte[8 * (last - first + 2)];
        file.readFully(MapFile.indexPosition(file.size(), partitions, first), raw, 0, raw.length);
        Index index = new Index(file, first, MapFile.decodeOffsets(raw, file.size(), partitions));
        if (kept) {
            synchronized (CACHE) {
                CACHE.put(path, index);
            }
        }
        return index;
    }

    static void forget(String path) {
        synchronized (CACHE) {
            CACHE.remove(path);
        }
    }
}
