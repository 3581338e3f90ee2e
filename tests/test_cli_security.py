"""`dfx run` on forged program files (docs/security.md): each is refused with exit code 2, one `error:` line on
stderr and nothing on stdout, and nothing is written: TMPDIR, HOME and the working directory are empty folders
before and after, and the traversal target does not exist. A good program runs with its tokenizer built in
memory and leaves no temporary directory; `--sign` and `--require-signed` check who wrote a program."""
import os
import stat
import subprocess
import sys
import tempfile
import zipfile

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dfx.cli import main
from dfx.program import key_fingerprint, load_trusted_key
from gpt2_fixtures import make_hf_gpt2
from program_forgery import add_compressed, raw_zip, read_members, reseal

TOKENIZER = "tokenizer/tokenizer.json"


def _byte_bpe(d):
    """A byte-level BPE tokenizer with no merges (256 tokens), saved as transformers saves one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab, []))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(d)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A checkpoint with tokenizer files, two key pairs (PEM), and the checkpoint compiled unsigned and signed."""
    d = tmp_path_factory.mktemp("sec")
    ckpt = d / "ckpt"
    make_hf_gpt2(4, n_embd=32, n_head=2, n_layer=1, n_positions=32, vocab_size=256).save_pretrained(ckpt)
    _byte_bpe(ckpt)
    for who in ("me", "other"):
        key = Ed25519PrivateKey.generate()
        (d / f"{who}.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
        (d / f"{who}.pub.pem").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    for name, extra in (("plain", []), ("signed", ["--sign", d / "me.pem"])):
        r = CliRunner().invoke(main, ["compile", str(ckpt), "-o", str(d / f"{name}.dfx"), *map(str, extra)])
        assert r.exit_code == 0, r.stderr
    assert TOKENIZER in read_members(d / "plain.dfx")
    return d


@pytest.fixture
def box(tmp_path):
    """Empty TMPDIR, HOME and working directory; the traversal target."""
    dirs = {k: tmp_path / k for k in ("tmp", "home", "cwd")}
    for p in dirs.values():
        p.mkdir()
    return dirs, tmp_path / "pwned"


def _untouched(box):
    dirs, target = box
    for name, d in dirs.items():
        assert not list(d.iterdir()), f"{name}: {list(d.iterdir())}"
    assert not target.exists()


def _in_process(box, monkeypatch, *args):
    dirs, _ = box
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.chdir(dirs["cwd"])
    r = CliRunner().invoke(main, [str(a) for a in args], env={"TMPDIR": str(dirs["tmp"]), "HOME": str(dirs["home"])})
    return r.exit_code, r.stdout, r.stderr


def _process(box, *args):
    dirs, _ = box
    env = {**os.environ, "TMPDIR": str(dirs["tmp"]), "HOME": str(dirs["home"])}
    r = subprocess.run([sys.executable, "-m", "dfx.cli", *map(str, args)], capture_output=True, text=True, env=env,
                       cwd=dirs["cwd"], timeout=600)
    return r.returncode, r.stdout, r.stderr


def _one_error_line(code, out, err, want):
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    assert want in err and "Traceback" not in err, err


def _forge(kind: str, work, dst, target):
    """A forged copy of the compiled program at `dst`; returns a phrase of the error it must give."""
    members = read_members(work / "plain.dfx")
    if kind == "traversal":                                  # issue 23's attack, aimed at `target`
        name = "tokenizer/" + "../" * 40 + str(target).lstrip("/")
        reseal(dst, {**members, name: b"echo pwned\n"})
        return f"member {ascii(name)} is refused: a program's tokenizer is the one member {TOKENIZER}"
    if kind == "absolute":
        reseal(dst, {**members, str(target): b"pwned"})
        return f"member {ascii(str(target))} is not part of a dfx program"
    if kind == "backslash":
        reseal(dst, {**members, "tokenizer/..\\..\\pwned": b"pwned"})
        return "member 'tokenizer/..\\\\..\\\\pwned' is refused"
    if kind == "nul":
        reseal(dst, {**members, "tokenizer/tokenizer.jsonQ/../../pwned": b"pwned"})
        dst.write_bytes(dst.read_bytes().replace(b"tokenizer.jsonQ", b"tokenizer.json\0"))
        return "member 'tokenizer/tokenizer.json\\x00/../../pwned' is refused"
    if kind == "symlink":
        link = zipfile.ZipInfo(TOKENIZER)
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        reseal(dst, {**{k: v for k, v in members.items() if k != TOKENIZER}, link: str(target).encode()})
        return f"member {TOKENIZER} is a symbolic link; a dfx program holds regular files only"
    if kind == "bomb":
        dst.write_bytes((work / "plain.dfx").read_bytes())
        add_compressed(dst, "dev0/ddr.bin", 32)
        return "member dev0/ddr.bin is compressed (ZIP method 8)"
    if kind == "members":
        dst.write_bytes(raw_zip([f"m{i}" for i in range(100_000)], zip64=True))
        return "has 100,000 members; a dfx program has at most 4,096"
    if kind == "oversized":
        reseal(dst, {**members, TOKENIZER: bytes((8 << 20) + 1)})
        return f"member {TOKENIZER} is 8,388,609 bytes; a program accepts at most 8,388,608 (a tokenizer.json)"
    if kind == "edited":
        reseal(dst, members, edit=lambda m: m.update(max_seq=8), digest=False)
        return "the program was modified after it was written (manifest.json does not match its digest)"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["traversal", "absolute", "backslash", "nul", "symlink", "bomb", "members",
                                  "oversized", "edited"])
def test_forged_program_is_refused_and_writes_nothing(work, box, monkeypatch, tmp_path, kind):
    prog = tmp_path / "forged.dfx"
    want = _forge(kind, work, prog, box[1])
    _one_error_line(*_in_process(box, monkeypatch, "run", prog, "--prompt", "hello", "-n", "2"), want)
    _untouched(box)


def test_traversal_program_as_a_process(work, box, tmp_path):
    """The attack of issue 23 as a user meets it: a real `dfx run` process, refused, nothing written."""
    prog = tmp_path / "forged.dfx"
    want = _forge("traversal", work, prog, box[1])
    _one_error_line(*_process(box, "run", prog, "--prompt", "hello", "-n", "2"), want)
    _untouched(box)


def test_run_builds_the_tokenizer_in_memory_and_leaves_no_temporary_directory(work, box):
    code, out, err = _process(box, "run", work / "plain.dfx", "--prompt", "hello", "-n", "3")
    assert code == 0, err
    assert out.startswith("hello") and len(out) > len("hello\n")
    _untouched(box)
    gen = CliRunner().invoke(main, ["generate", "hello", "--model", str(work / "ckpt"), "-n", "3"])
    assert gen.exit_code == 0 and gen.stdout == out          # the tokenizer from memory = the checkpoint's


def test_signed_program_runs_with_and_without_require_signed(work, box, monkeypatch):
    for extra in ([], ["--require-signed", work / "me.pub.pem"]):
        code, out, err = _in_process(box, monkeypatch, "run", work / "signed.dfx", "--prompt", "hi", "-n", "2",
                                     *extra)
        assert code == 0 and out.startswith("hi"), err
    assert not list(box[0]["tmp"].iterdir())


def test_require_signed_refuses_unsigned_and_foreign_programs(work, box, monkeypatch):
    me = key_fingerprint(load_trusted_key(work / "me.pub.pem"))
    _one_error_line(*_process(box, "run", work / "plain.dfx", "--prompt", "hi", "--require-signed",
                              work / "me.pub.pem"),
                    f"plain.dfx is not signed; only a program signed with key {me} (dfx compile --sign) is accepted")
    other = key_fingerprint(load_trusted_key(work / "other.pub.pem"))
    _one_error_line(*_in_process(box, monkeypatch, "run", work / "signed.dfx", "--prompt", "hi", "--require-signed",
                                 work / "other.pub.pem"),
                    f"signed.dfx is signed by key {me}, not by the trusted key {other}")
    _one_error_line(*_in_process(box, monkeypatch, "run", work / "signed.dfx", "--prompt", "hi", "--require-signed",
                                 work / "me.pem"),
                    "me.pem is not an unencrypted Ed25519 public key in PEM form; make one with: openssl pkey")
    _untouched(box)


def test_compile_sign_with_a_bad_key_writes_nothing(work, tmp_path):
    out = tmp_path / "out.dfx"
    r = CliRunner().invoke(main, ["compile", str(work / "ckpt"), "-o", str(out), "--sign", str(work / "me.pub.pem")])
    _one_error_line(r.exit_code, r.stdout, r.stderr, "me.pub.pem is not an unencrypted Ed25519 private key")
    assert not out.exists()
