"""The node's own DICOM Upper Layer acceptor (PS3.8): the receive hot path without pynetdicom.

Why: pynetdicom moves every PDU through two threads, three queues and 1 ms polling loops and
assembles datasets in memory; `vpet bench receive` measured it at a fraction of DCMTK
storescp's speed. Here one thread per association reads PDUs straight into a reused buffer and
writes dataset fragments straight to a file, so the only per-instance costs left are the
durability ones (fsync, database commit). pynetdicom remains the node's SCU (sending).

Modules: `pdu` (framing, A-ASSOCIATE parsing and answers), `dimse` (command sets),
`association` (one connection's life), `server` (listening socket, threads, shutdown).
"""
