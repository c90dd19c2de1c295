"""The fuzz suite's machinery: hostile values (`values`), one driver per public
callable (`drivers`), and a persistent worker process that runs the calls so a
crash or a hang fails a test instead of the test run (`worker`)."""
