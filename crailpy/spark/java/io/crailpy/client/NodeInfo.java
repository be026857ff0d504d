package io.crailpy.client;

/**
 * A node of the namespace as the namenode reports it (docs/protocol.md 4, {@code NodeInfo}).
 * {@code size} is bytes for a file, entries for a directory or table, the committed parts'
 * bytes for a multifile. {@code locationClass} is -1 for none.
 */
public record NodeInfo(long id, int type, int storageClass, int locationClass, boolean committed,
                       int blockSize, long size, long mtimeNs) {
    public static final int DIRECTORY = 0;
    public static final int FILE = 1;
    public static final int MULTIFILE = 2;
    public static final int TABLE = 3;

    /** The lower-case name of {@code type}, for messages. */
    public String typeName() {
        switch (type) {
            case DIRECTORY: return "directory";
            case FILE: return "file";
            case MULTIFILE: return "multifile";
            case TABLE: return "table";
            default: return "node of type " + type;
        }
    }

    public boolean isFile() {
        return type == FILE;
    }

    public boolean isDirectory() {
        return type == DIRECTORY;
    }
}
