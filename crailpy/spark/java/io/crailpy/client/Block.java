package io.crailpy.client;

/**
 * Where one block lives (docs/protocol.md 4, {@code Block}): a datanode id, a byte offset in its
 * region, and the u32 key of the key region holding it, kept bit for bit in an int.
 */
public record Block(int datanode, long offset, int key) {
}
