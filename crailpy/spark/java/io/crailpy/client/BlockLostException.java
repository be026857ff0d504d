package io.crailpy.client;

/**
 * A block's bytes are gone (its datanode died or restarted, or a fresh location was refused
 * again): the file cannot be read or completed, and retrying will not help.
 */
public class BlockLostException extends CrailpyException {
    private static final long serialVersionUID = 1L;

    public BlockLostException(String message) {
        super(Status.BLOCK_LOST, message);
    }
}
