//! The .difypkg / .difybndl codec.
