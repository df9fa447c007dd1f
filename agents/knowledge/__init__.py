"""Knowledge bases: uploads, parsing, chunking, embedding and search."""
