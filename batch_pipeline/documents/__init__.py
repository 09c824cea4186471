"""Documents before they are records: walking a folder without trusting it (``folder``), reading
a source (folder, JSONL, inline), vetting each document (id, decoding, why it cannot be
analysed), and the inbox folder the sensor watches."""
