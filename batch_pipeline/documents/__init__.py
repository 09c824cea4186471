"""Documents before they are records: reading a source (folder, JSONL, inline), vetting each
document (id, decoding, why it cannot be analysed), and the inbox folder the sensor watches."""
