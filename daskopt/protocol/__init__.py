"""What the engine loop and a trial task say to each other: the messages (:mod:`.events`) and their frames
(:mod:`.framing`). Both sides import this package and nothing of each other's."""
