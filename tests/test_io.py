import os
import stat
import threading
import time

from leukonet import io


def test_atomic_writes_from_threads_keep_the_process_umask(tmp_path, monkeypatch):
    # atomic_path reads the umask by setting it and setting it back; the loader's cache
    # writes from worker threads, and two threads interleaving there left the umask 0.
    real_umask = os.umask
    initial = real_umask(0o027)
    try:
        def slow_umask(mask):  # widen the window between the set and the restore
            old = real_umask(mask)
            time.sleep(0.005)
            return old

        monkeypatch.setattr(os, "umask", slow_umask)
        threads = [threading.Thread(target=io.write_bytes, args=(tmp_path / f"{k}.bin", b"x"))
                   for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        monkeypatch.undo()
        now = real_umask(0o027)
        assert now == 0o027
        assert {stat.S_IMODE((tmp_path / f"{k}.bin").stat().st_mode) for k in range(8)} == {0o640}
    finally:
        real_umask(initial)
