package io.crailpy.client;

/** The opcodes of docs/protocol.md section 5, in one place so that frames name them alike. */
final class Op {
    static final int PING = 1;
    static final int CREATE = 2;
    static final int LOOKUP = 3;
    static final int GET_BLOCKS = 4;
    static final int ALLOC_BLOCKS = 5;
    static final int COMMIT = 6;
    static final int ABORT = 7;
    static final int LIST = 8;
    static final int DELETE = 9;
    static final int RENAME = 10;
    static final int STATFS = 11;
    static final int CREATE_PART = 12;
    static final int LIST_PARTS = 15;
    static final int READ = 32;
    static final int WRITE = 33;

    private Op() {
    }
}
