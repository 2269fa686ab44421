"""Languages: the catalog of codes and alphabets (`catalog`), which installed engine and
profile reads each (`routing`), and whether a page's text is in the script asked for
(`scripts`). Pure: no I/O, no engines; unit-tested without a server."""
