"""Files that are not text — PDFs, Office files, web pages, e-mails, scans — turned into the
markdown the analysers read, offline, each in a worker process with a hard time limit."""
