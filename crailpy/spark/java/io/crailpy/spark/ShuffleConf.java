package io.crailpy.spark;

import org.apache.spark.SparkConf;

/** The {@code spark.crailpy.*} settings (docs/spark.md lists them), read once per component. */
public final class ShuffleConf {
    public static final String PREFIX = "spark.crailpy.";

    /** host:port of the crailpy namenode. */
    public final String namenode;
    /** Directory under which each application keeps its shuffles: {@code <root>/<appId>/<shuffleId>}. */
    public final String root;
    /** Storage class index of the shuffle files; the Java client moves bytes over TCP, so a class
     *  whose datanodes serve TCP (dram, the file tier), never one of nvmf datanodes. */
    public final int storageClass;
    /** Seconds a driver's lease lasts; a crailpy-shuffle driver renews its own at a third of it
     *  and removes the directories of applications whose lease has run out. */
    public final long leaseSeconds;
    /** Map outputs a reduce task fetches at once, and the bytes it lets be in flight. */
    public final int fetchThreads;
    public final long maxBytesInFlight;

    public ShuffleConf(SparkConf conf) {
        namenode = conf.get(PREFIX + "namenode", "127.0.0.1:9060");
        root = trimSlash(conf.get(PREFIX + "root", "/spark"));
        storageClass = conf.getInt(PREFIX + "storageClass", 0);
        leaseSeconds = conf.getTimeAsSeconds(PREFIX + "lease", "60s");
        fetchThreads = conf.getInt(PREFIX + "fetchThreads", 8);
        maxBytesInFlight = conf.getSizeAsBytes(PREFIX + "maxBytesInFlight", "48m");
        if (leaseSeconds < 3 || fetchThreads < 1 || maxBytesInFlight < 1) {
            throw new IllegalArgumentException(PREFIX + "lease must be at least 3s, " + PREFIX
                + "fetchThreads and " + PREFIX + "maxBytesInFlight at least 1");
        }
    }

    private static String trimSlash(String path) {
        String p = path.endsWith("/") ? path.substring(0, path.length() - 1) : path;
        if (!p.startsWith("/")) {
            throw new IllegalArgumentException(PREFIX + "root must be an absolute path: " + path);
        }
        return p;
    }

    public String appDir(String appId) {
        return root + "/" + appId;
    }

    public String shuffleDir(String appId, int shuffleId) {
        return appDir(appId) + "/" + shuffleId;
    }

    /** One file per map task attempt: its partitions back to back, then the index (MapFile). */
    public String mapFile(String appId, int shuffleId, long mapTaskId) {
        return shuffleDir(appId, shuffleId) + "/" + mapTaskId;
    }
}
