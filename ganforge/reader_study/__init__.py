"""Reader studies: a visual Turing test that readers (radiologists) take in a browser.

``study`` writes a study folder (images encoded identically, the key apart), ``sources`` draws its
images from folders or a generator, ``store`` keeps readers and answers in SQLite, ``server`` is
the reading web app, ``statistics`` and ``report`` turn answers into the figures papers report.
The ``ganforge reader-study`` commands call these; docs/reader-study.md is the guide.
"""
