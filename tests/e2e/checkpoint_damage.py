"""Attribute checksums (issue 19, item 2): every root attribute of a checkpoint carries a CRC32C.
1. Editing an attribute (lr_scheduler.last_batch_iteration 3 -> 9, as a user might) makes
   `checkpoint verify` and a resume fail, naming the attribute.
2. One byte flipped inside each attribute's stored value: verify fails naming that attribute.
3. Bytes flipped across the whole file (FLIPS positions, evenly spread plus random): verify either
   fails, or the file means exactly what it meant (`h5dump -A` unchanged: the flip hit unused
   bytes; the datasets are covered by their own CRC32Cs, which verify recomputes).
Usage: checkpoint_damage.py DEEPMPI CHECKPOINT_DIR (a tiny checkpoint at global_step<N>, latest)"""
import os, random, shutil, subprocess, sys, tempfile
import h5py, numpy as np

BIN, CK = sys.argv[1], sys.argv[2]
FLIPS = int(os.environ.get("FLIPS", "40"))
tag = open(os.path.join(CK, "latest")).read().strip()
orig = os.path.join(CK, tag, "checkpoint.h5")
work = tempfile.mkdtemp()
fails = []

def copy_dir():
    d = os.path.join(work, "ck")
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(CK, d)
    return d, os.path.join(d, tag, "checkpoint.h5")

def flipped_copy(pos, mask):
    """A fresh copy of the checkpoint with the byte at pos XORed with mask."""
    d, f = copy_dir()
    with open(f, "r+b") as fh:
        fh.seek(pos)
        b = fh.read(1)
        fh.seek(pos)
        fh.write(bytes([b[0] ^ mask]))
    return d, f

def verify(d):
    r = subprocess.run([BIN, "checkpoint", "verify", d], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr

def dump_attrs(path):
    r = subprocess.run(["h5dump", "-A", path], capture_output=True, text=True)
    return r.returncode, r.stdout.replace(path, "FILE")

# 1. an edited attribute
d, f = copy_dir()
with h5py.File(f, "r+") as h:
    old = h.attrs["lr_scheduler"]
    text = old.decode() if isinstance(old, bytes) else str(old)
    new = text.replace('"last_batch_iteration":', '"last_batch_iteration":9,"was":').encode()
    del h.attrs["lr_scheduler"]
    h.attrs["lr_scheduler"] = np.bytes_(new)
rc, out = verify(d)
if rc == 0 or "attribute 'lr_scheduler' is damaged or was edited" not in out:
    fails.append(f"edited lr_scheduler: verify rc {rc}: {out[-300:]}")
r = subprocess.run([BIN, "train", "--model", "tiny", "--seq-length", "32", "--train-iters", "50",
                    "--save", d], capture_output=True, text=True)
if r.returncode == 0 or "lr_scheduler" not in r.stdout + r.stderr:
    fails.append(f"edited lr_scheduler: the resume did not refuse it (rc {r.returncode})")
print(f"edited attribute: verify and load refuse it, naming lr_scheduler")

# 2. one byte inside each attribute's value
with h5py.File(orig, "r") as h:
    names = list(h.attrs.keys())
blob = open(orig, "rb").read()
checked = 0
for name in names:
    if name == "attributes_crc32c":
        continue
    with h5py.File(orig, "r") as h:
        v = h.attrs[name]
    raw = v if isinstance(v, bytes) else (np.asarray(v).tobytes() if not isinstance(v, str) else v.encode())
    if len(raw) < 4 or blob.count(raw) != 1:
        continue  # short numbers appear elsewhere too: covered by the flips below
    pos = blob.index(raw) + len(raw) // 2
    d, f = flipped_copy(pos, 0x01)
    rc, out = verify(d)
    if rc == 0 or f"attribute '{name}'" not in out:
        fails.append(f"flip in attribute {name} at {pos}: verify rc {rc}: {out[-200:]}")
    checked += 1
print(f"one byte flipped in each of {checked} attribute values: verify names the attribute each time")
if checked < 5:
    fails.append(f"only {checked} attribute values found in the file")

# 3. flips across the whole file
size = len(blob)
_, ref_dump = dump_attrs(orig)
rng = random.Random(1234)
positions = sorted({int(i * size / FLIPS) for i in range(FLIPS)} | {rng.randrange(size) for _ in range(FLIPS)})
caught = harmless = 0
for pos in positions:
    d, f = flipped_copy(pos, 0xFF)
    rc, out = verify(d)
    if rc != 0:
        caught += 1
        continue
    drc, dump = dump_attrs(f)
    if drc != 0 or dump != ref_dump:
        fails.append(f"flip at byte {pos} of {size}: verify passed but the file's attributes changed")
    else:
        harmless += 1
print(f"{len(positions)} flips across the {size}-byte file: {caught} refused by verify, {harmless} in unused bytes "
      f"(h5dump -A unchanged), 0 loaded silently" if not fails else "")
shutil.rmtree(work, ignore_errors=True)
if fails:
    print("FAIL:\n  " + "\n  ".join(fails[:20]))
    sys.exit(1)
print("checkpoint damage: all checks passed")
