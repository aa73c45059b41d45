"""caffe_build/host_prefix.sh: Caffe's host libraries as bookworm .debs, unpacked into a prefix folder.

The download is real (apt-get download, ~38 MiB, once per session: slow); the prefix it
unpacks must hold every header, library and protoc a Caffe build needs, so that a program
linked against it resolves all but the compiler's own base libraries from inside the
prefix, although this machine also has the system packages installed.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "caffe_build" / "host_prefix.sh"
BUDGET = 40 * 2**20  # what may travel to the machine without apt
ERROR_LINE = re.compile(r"^error: .+; fix: .+$")
# the base set the script never downloads (glibc, the compiler's runtime, cc1plus's libraries)
BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libzstd1", "libgmp10"}
BASE_SONAMES = {"linux-vdso.so.1", "ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libdl.so.2",
                "libpthread.so.0", "librt.so.1", "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1",
                "libresolv.so.2", "libzstd.so.1", "libgmp.so.10"}
HEADERS = ["glog/logging.h", "gflags/gflags.h", "google/protobuf/message.h", "boost/shared_ptr.hpp",
           "boost/filesystem.hpp", "hdf5.h", "hdf5_hl.h", "lmdb.h", "cblas.h"]
LIBS = ["libglog.so", "libgflags.so", "libprotobuf.so", "libboost_system.so", "libboost_filesystem.so",
        "libboost_thread.so", "libboost_regex.so", "libhdf5.so", "libhdf5_hl.so", "liblmdb.so",
        "libopenblas.so"]
PROGRAM_SONAMES = ["libglog.so.1", "libgflags.so.2.2", "libprotobuf.so.32", "libboost_filesystem.so.1.74.0",
                   "libhdf5_serial.so.103", "liblmdb.so.0", "libopenblas.so.0"]
PROTO = 'syntax = "proto2";\npackage tiny;\nmessage Msg { optional string name = 1; repeated float v = 2; }\n'
PROGRAM = r"""
#include <cstdio>
#include <string>
#include <boost/filesystem.hpp>
#include <boost/shared_ptr.hpp>
#include <cblas.h>
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <hdf5.h>
#include <lmdb.h>
#include "tiny.pb.h"
DEFINE_int32(n, 2, "matrix size");
int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  tiny::Msg m; m.set_name("caffe"); m.add_v(1.5f);
  std::string s; CHECK(m.SerializeToString(&s));
  boost::shared_ptr<tiny::Msg> back(new tiny::Msg); CHECK(back->ParseFromString(s));
  CHECK_EQ(back->name(), "caffe");
  CHECK(boost::filesystem::exists(argv[0]));
  CHECK_GE(H5open(), 0);
  unsigned maj, min, rel; CHECK_GE(H5get_libversion(&maj, &min, &rel), 0);
  MDB_env* env; CHECK_EQ(mdb_env_create(&env), 0); mdb_env_close(env);
  float a[4] = {1, 2, 3, 4}, b[4] = {1, 0, 0, 1}, c[4] = {0, 0, 0, 0};
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, FLAGS_n, FLAGS_n, FLAGS_n,
              1.f, a, FLAGS_n, b, FLAGS_n, 0.f, c, FLAGS_n);
  CHECK_EQ(c[3], 4.f);
  std::printf("ok hdf5 %u.%u sgemm %g %g %g %g\n", maj, min, c[0], c[1], c[2], c[3]);
  return 0;
}
"""


def _run(*args, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True, check=False)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _host_env(prefix: Path) -> dict[str, str]:
    """The HOST_* variables, read back through bash's eval (which is how a build uses them)."""
    names = ["HOST_INCLUDE_DIRS", "HOST_LIBRARY_DIRS", "HOST_PROTOC", "HOST_LD_LIBRARY_PATH", "HOST_LDFLAGS"]
    script = f'eval "$("{SCRIPT}" env "{prefix}")"; ' + "; ".join(f'printf "%s\\0" "${n}"' for n in names)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    return dict(zip(names, out.split("\0")))


def _inside(path: str | Path, prefix: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(prefix.resolve())


def _ldd(binary: Path, env: dict[str, str]) -> dict[str, str]:
    """soname -> the file the dynamic loader picks (or 'not found')."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True, env=env).stdout
    libs = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+)\s+=>\s+(not found|\S+)", line) or re.match(r"\s*(/\S+)\s+\(", line)
        if m:
            libs[Path(m.group(1)).name] = m.group(2) if m.lastindex == 2 else m.group(1)
    return libs


def _assert_from_prefix(libs: dict[str, str], prefix: Path) -> None:
    assert "not found" not in libs.values(), libs
    outside = {k: v for k, v in libs.items() if k not in BASE_SONAMES and not _inside(v, prefix)}
    assert not outside, f"resolved outside the prefix: {outside}"
    for soname in PROGRAM_SONAMES:
        assert soname in libs and _inside(libs[soname], prefix), (soname, libs)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}


def _fake_debdir(path: Path, packages: str = "libfoo=1.0\n") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "packages.txt").write_text(packages)
    (path / ".complete").touch()
    return path


@pytest.fixture(scope="session")
def debdir(tmp_path_factory) -> Path:
    osr = Path("/etc/os-release")
    if shutil.which("apt-get") is None or "bookworm" not in (osr.read_text() if osr.exists() else ""):
        pytest.skip("download needs Debian bookworm with apt (its package names are pinned)")
    d = tmp_path_factory.mktemp("host-debs") / "debs"
    _run("download", d)
    return d


@pytest.fixture(scope="session")
def prefix(debdir, tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("host-prefix") / "prefix"
    _run("unpack", debdir, p)
    return p


@pytest.fixture(scope="session")
def host(prefix) -> dict[str, str]:
    return _host_env(prefix)


@pytest.fixture(scope="session")
def generated(host, tmp_path_factory) -> Path:
    """tiny.proto compiled by the prefix's protoc."""
    d = tmp_path_factory.mktemp("host-proto")
    (d / "tiny.proto").write_text(PROTO)
    env = {**_clean_env(), "LD_LIBRARY_PATH": host["HOST_LD_LIBRARY_PATH"]}
    subprocess.run([host["HOST_PROTOC"], f"-I{d}", f"--cpp_out={d}", str(d / "tiny.proto")],
                   check=True, env=env, cwd=d)
    return d


@pytest.mark.slow
def test_download_is_complete_listed_and_within_budget(debdir):
    assert (debdir / ".complete").is_file()
    pins = (debdir / "packages.txt").read_text().split()
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9.+-]*=\S+", p) for p in pins), pins
    names = {p.split("=")[0] for p in pins}
    assert {"libgoogle-glog-dev", "libprotobuf-dev", "protobuf-compiler", "libhdf5-dev",
            "libopenblas-pthread-dev", "libopenblas0-pthread", "libcurl4"} <= names
    assert not names & BASE_PACKAGES, names & BASE_PACKAGES
    assert not [n for n in names if n.endswith("-doc") or n.startswith("libhdf5") and ("fortran" in n or "cpp" in n)]
    debs = list(debdir.glob("*.deb"))
    assert len(debs) == len(pins)
    total = sum(f.stat().st_size for f in debs)
    assert total < BUDGET, f"{total / 2**20:.1f} MiB of .deb files"
    before = (debdir / ".complete").stat().st_mtime_ns
    again = _run("download", debdir)
    assert "nothing to do" in again.stdout
    assert (debdir / ".complete").stat().st_mtime_ns == before


@pytest.mark.slow
def test_prefix_has_the_headers_libraries_and_only_inner_links(prefix, host):
    assert (prefix / ".complete").is_file()
    incs, libdirs = host["HOST_INCLUDE_DIRS"].split(), host["HOST_LIBRARY_DIRS"].split()
    assert all(Path(d).is_absolute() and _inside(d, prefix) for d in incs + libdirs)
    for h in HEADERS:
        assert any((Path(d) / h).is_file() for d in incs), h
    assert (prefix / "usr/include/hdf5/serial/hdf5.h").is_file()
    for lib in LIBS:
        found = [Path(d) / lib for d in libdirs if (Path(d) / lib).exists()]
        assert found and _inside(found[0], prefix), lib
    assert (prefix / "usr/lib/x86_64-linux-gnu/libhdf5_serial_hl.so").exists()
    assert (prefix / "usr/lib/x86_64-linux-gnu/libopenblas.so").exists()  # the alternatives link
    links = [p for p in prefix.rglob("*") if p.is_symlink()]
    assert len(links) > 50
    bad = [str(p) for p in links if os.readlink(p).startswith("/") or not _inside(p, prefix) or not p.exists()]
    assert not bad, bad


@pytest.mark.slow
def test_prefix_protoc_is_3_21_and_compiles_a_proto(prefix, host, generated):
    assert _inside(host["HOST_PROTOC"], prefix)
    env = {**_clean_env(), "LD_LIBRARY_PATH": host["HOST_LD_LIBRARY_PATH"]}
    version = subprocess.run([host["HOST_PROTOC"], "--version"], capture_output=True, text=True,
                             check=True, env=env).stdout
    assert version.startswith("libprotoc 3.21."), version
    libs = _ldd(Path(host["HOST_PROTOC"]), env)
    assert _inside(libs["libprotoc.so.32"], prefix) and _inside(libs["libprotobuf.so.32"], prefix), libs
    assert (generated / "tiny.pb.h").is_file() and (generated / "tiny.pb.cc").is_file()


@pytest.mark.slow
def test_a_program_builds_and_runs_against_the_prefix_alone(prefix, host, generated, tmp_path):
    incs = [f"-I{d}" for d in host["HOST_INCLUDE_DIRS"].split()] + [f"-I{generated}"]
    libdirs = host["HOST_LIBRARY_DIRS"].split()
    (tmp_path / "main.cpp").write_text(PROGRAM)
    for src in (tmp_path / "main.cpp", generated / "tiny.pb.cc"):
        obj = tmp_path / (src.stem + ".o")
        subprocess.run(["g++", "-std=c++17", "-O1", *incs, "-MD", "-MF", f"{obj}.d", "-c", str(src),
                        "-o", str(obj)], check=True, capture_output=True, text=True)
    deps = (tmp_path / "main.o.d").read_text().replace("\\\n", " ").split()
    for h in (h for h in HEADERS if h != "hdf5_hl.h"):  # what main.cpp and tiny.pb.h include
        hit = [d for d in deps if d.endswith("/" + h)]
        assert hit and _inside(hit[0], prefix), (h, hit)
    libs = ["-lglog", "-lgflags", "-lprotobuf", "-lboost_filesystem", "-lboost_system", "-lhdf5",
            "-llmdb", "-lopenblas", "-pthread"]
    common = [str(tmp_path / "main.o"), str(tmp_path / "tiny.pb.o"), *[f"-L{d}" for d in libdirs],
              *[f"-Wl,-rpath,{d}" for d in libdirs], *host["HOST_LDFLAGS"].split(), *libs]
    # RPATH (searched for every library's own dependencies too): runs with no LD_LIBRARY_PATH
    rpath_bin = tmp_path / "prog-rpath"
    subprocess.run(["g++", "-Wl,--disable-new-dtags", *common, "-o", str(rpath_bin)], check=True,
                   capture_output=True, text=True)
    # RUNPATH (the default): the libraries' own dependencies come from HOST_LD_LIBRARY_PATH
    runpath_bin = tmp_path / "prog-runpath"
    subprocess.run(["g++", *common, "-o", str(runpath_bin)], check=True, capture_output=True, text=True)
    for binary, env in ((rpath_bin, _clean_env()),
                        (runpath_bin, {**_clean_env(), "LD_LIBRARY_PATH": host["HOST_LD_LIBRARY_PATH"]})):
        out = subprocess.run([str(binary), "--n=2"], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("ok hdf5 1.10 sgemm 1 2 3 4"), out.stdout
        _assert_from_prefix(_ldd(binary, env), prefix)


@pytest.mark.slow
def test_unpack_onto_a_complete_prefix_is_a_no_op_and_a_foreign_one_is_refused(prefix, debdir, tmp_path):
    before = (prefix / ".complete").stat().st_mtime_ns, (prefix / "usr").stat().st_ino
    again = _run("unpack", debdir, prefix)
    assert "nothing to do" in again.stdout
    assert ((prefix / ".complete").stat().st_mtime_ns, (prefix / "usr").stat().st_ino) == before
    other = _fake_debdir(tmp_path / "other-debs")
    proc = _run("unpack", other, prefix, check=False)
    assert proc.returncode != 0 and ERROR_LINE.fullmatch(proc.stderr.strip()), proc.stderr
    assert ((prefix / ".complete").stat().st_mtime_ns, (prefix / "usr").stat().st_ino) == before


def _bad_cases(tmp_path: Path) -> list[tuple[str, list]]:
    empty = tmp_path / "empty"
    empty.mkdir()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    return [("download without a folder", ["download"]),
            ("unpack of a DEBDIR without .complete", ["unpack", empty, tmp_path / "p1"]),
            ("unpack without PREFIX", ["unpack", empty]),
            ("unpack onto a folder that is no prefix", ["unpack", _fake_debdir(tmp_path / "d"), busy]),
            ("env of a folder without .complete", ["env", empty]),
            ("env without a folder", ["env"]),
            ("an unknown command", ["install", empty])]


def test_bad_input_gives_one_error_line_and_a_non_zero_exit(tmp_path):
    for what, args in _bad_cases(tmp_path):
        proc = _run(*args, check=False)
        assert proc.returncode != 0, what
        assert ERROR_LINE.fullmatch(proc.stderr.strip()) and proc.stderr.count("\n") == 1, (what, proc.stderr)
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "p1").exists()
