package io.crailpy.spark;

import io.crailpy.client.FileWriter;
import java.io.IOException;
import java.io.OutputStream;
import org.apache.spark.shuffle.api.ShuffleMapOutputWriter;
import org.apache.spark.shuffle.api.ShufflePartitionWriter;
import org.apache.spark.shuffle.api.metadata.MapOutputCommitMessage;

/**
 * Writes one map task's partitions, in increasing order as Spark asks for them, into one
 * crailpy file, then its index (MapFile). The file is committed only when every partition
 * is in, so a reader never sees half a map output: it finds the whole file or none.
 */
final class CrailpyMapOutputWriter implements ShuffleMapOutputWriter {
    private final FileWriter file;
    private final long[] lengths;
    private int lastPartition = -1;

    CrailpyMapOutputWriter(FileWriter file, int partitions) {
        this.file = file;
        this.lengths = new long[partitions];
    }

    @Override
    public ShufflePartitionWriter getPartitionWriter(int partition) throws IOException {
        if (partition <= lastPartition || partition >= lengths.length) {
            throw new IOException("partition " + partition + " asked for after " + lastPartition
                + " (of " + lengths.length + "): partitions must come in increasing order");
        }
        lastPartition = partition;
        return new PartitionWriter(partition);
    }

    @Override
    public MapOutputCommitMessage commitAllPartitions(long[] checksums) throws IOException {
        file.write(MapFile.encodeIndex(lengths));
        file.close();
        return MapOutputCommitMessage.of(lengths);
    }

    @Override
    public void abort(Throwable error) throws IOException {
        file.abort();
    }

    /** One partition's bytes: appended to the file; closing the stream ends the partition. */
    private final class PartitionWriter extends OutputStream implements ShufflePartitionWriter {
        private final int partition;
        private final long start = file.position();
        private boolean closed;

        PartitionWriter(int partition) {
            this.partition = partition;
        }

        @Override
        public OutputStream openStream() {
            return this;
        }

        @Override
        public long getNumBytesWritten() {
            return closed ? lengths[partition] : file.position() - start;
        }

        @Override
        public void write(int b) throws IOException {
            file.write(b);
        }

        @Override
        public void write(byte[] b, int off, int len) throws IOException {
            file.write(b, off, len);
        }

        @Override
        public void close() {
            if (!closed) {
                lengths[partition] = file.position() - start;
                closed = true;
            }
        }
    }
}
