package io.crailpy.spark;

import org.apache.spark.SparkConf;
import org.apache.spark.shuffle.api.ShuffleDataIO;
import org.apache.spark.shuffle.api.ShuffleDriverComponents;
import org.apache.spark.shuffle.api.ShuffleExecutorComponents;

/** Spark's write-side plug point ({@code spark.shuffle.sort.io.plugin.class}): map outputs go to crailpy. */
public final class CrailpyShuffleDataIO implements ShuffleDataIO {
    private final SparkConf conf;

    public CrailpyShuffleDataIO(SparkConf conf) {
        this.conf = conf;
    }

    @Override
    public ShuffleExecutorComponents executor() {
        return new CrailpyExecutorComponents(conf);
    }

    @Override
    public ShuffleDriverComponents driver() {
        return new CrailpyDriverComponents(conf);
    }
}
