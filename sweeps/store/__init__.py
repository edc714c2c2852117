"""The results store of one sweep: its folder and files (store), merging them (compact), its
lock, where a store may be (uri), its errors, what it holds (status), and secrets cut from
what is printed (redact). Reading is records/'s."""
