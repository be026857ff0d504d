package io.crailpy.spark;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The layout of one map task's output file: the bytes of partitions 0 .. R-1 back to back,
 * then an index of R + 1 little-endian u64 offsets (offset[p] is where partition p starts;
 * offset[R] is where the data ends). One file per map task keeps the file count at maps,
 * not maps x partitions; the index at the end lets the writer stream without knowing sizes.
 */
public final class MapFile {
    private MapFile() {}

    public static long indexBytes(int partitions) {
        return 8L * (partitions + 1);
    }

    public static byte[] encodeIndex(long[] lengths) {
        ByteBuffer index = ByteBuffer.allocate(8 * (lengths.length + 1)).order(ByteOrder.LITTLE_ENDIAN);
        long offset = 0;
        index.putLong(offset);
        for (long length : lengths) {
            offset += length;
            index.putLong(offset);
        }
        return index.array();
    }

    /** Where in the file the index entries {@code first .. last} (inclusive) are. */
    public static long indexPosition(long fileSize, int partitions, int first) {
        return fileSize - indexBytes(partitions) + 8L * first;
    }

    /** Decode offsets read at {@link #indexPosition}, checking them against the file. */
    public static long[] decodeOffsets(byte[] raw, long fileSize, int partitions) {
        ByteBuffer in = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
        long[] offsets = new long[raw.length / 8];
        long dataEnd = fileSize - indexBytes(partitions);
        for (int i = 0; i < offsets.length; i++) {
            offsets[i] = in.getLong();
            if (offsets[i] < 0 || offsets[i] > dataEnd || (i > 0 && offsets[i] < offsets[i - 1])) {
                throw new IllegalStateException("corrupt map output index: offset " + offsets[i]
                    + " in a file of " + fileSize + " bytes with " + partitions + " partitions");
            }
        }
        return offsets;
    }
}
