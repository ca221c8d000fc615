import sys, re
from test_postcopy import *
@pytest.mark.parametrize("i", range(3))
def test_show(guest_factory, tmp_path, i):
    src, ssock = source(guest_factory, tmp_path, cpus=2, memory="1G")
    src.command("fill 512M", r"^FILL done")
    src.command("dirty 512M 0", r"^DIRTY started")
    q = Qmp(ssock); q.cmd("qmp_capabilities"); q.cmd("migrate-set-parameters", {"max-bandwidth": 100000000})
    dst, uri, dsock = destination(tmp_path)
    r = migrate_postcopy(ssock, uri)
    print([l for l in r.stderr.splitlines() if "completed" in l])
    check_moved(src, dst)
    dst.kill()
