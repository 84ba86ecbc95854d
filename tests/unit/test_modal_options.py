"""Modal's decorator options and names: accepted, renamed, refused or unknown."""

from __future__ import annotations

from pathlib import Path

import pytest

import rayfn as modal
from rayfn.exception import InvalidError
from rayfn.options import check_mounts
from rayfn_service.call_environment import mount


def test_unknown_option_is_an_invalid_error_naming_it() -> None:
    app = modal.App("opts")
    with pytest.raises(InvalidError, match="no option 'retrys'"):
        app.function(retrys=3)(lambda: None)
    with pytest.raises(InvalidError, match="no option 'colour'"):
        app.cls(colour="red")(type("C", (), {}))
    with pytest.raises(InvalidError, match="no option 'gpus'"):
        modal.App("x", gpus=1)


def test_options_without_meaning_are_accepted() -> None:
    app = modal.App("opts")
    fn = app.function(region="us-east", cloud="aws", ephemeral_disk=1024,
                      enable_memory_snapshot=True, single_use_containers=True,
                      serialized=True, name="f")(lambda: 1)
    assert fn.options.timeout == 300


def test_older_names_map_to_rayfn_options() -> None:
    app = modal.App("opts")

    def f() -> None: ...

    fn = app.function(concurrency_limit=3, keep_warm=1, container_idle_timeout=90)(f)
    assert (fn.options.max_containers, fn.options.min_containers,
            fn.options.scaledown_window) == (3, 1, 90)


def test_promises_rayfn_cannot_keep_are_refused() -> None:
    app = modal.App("opts")
    with pytest.raises(InvalidError, match="block_network"):
        app.function(block_network=True)(lambda: None)
    app.function(block_network=False, name="fine")(lambda: None)


def test_gpu_objects_and_lists() -> None:
    app = modal.App("opts")
    assert app.function(gpu=modal.gpu.A100(count=2), name="a")(lambda: 0).options.gpu == 2
    assert app.function(gpu=["H100", "A100:4"], name="b")(lambda: 0).options.gpu == 1


@pytest.mark.parametrize("path", ["data", "/data/../etc", "/", "/proc", "/a//b", "/tmp",
                                  "/x\x00y", 5])
def test_bad_mount_paths(path: object) -> None:
    with pytest.raises(InvalidError):
        check_mounts([(path, "vol")])  # type: ignore[list-item]


def test_a_volume_mounted_twice_or_mounts_nested() -> None:
    with pytest.raises(InvalidError, match="mounted twice"):
        check_mounts([("/a", "v"), ("/b", "v")])
    with pytest.raises(InvalidError, match="inside mount"):
        check_mounts([("/a", "v"), ("/a/b", "w")])
    assert check_mounts([("/b", "w"), ("/a", "v")]) == (("/a", "v"), ("/b", "w"))


def test_volumes_must_be_volumes() -> None:
    app = modal.App("opts")
    with pytest.raises(InvalidError, match="must be a rayfn.Volume"):
        app.function(volumes={"/data": "myvol"})(lambda: None)


def test_cloud_bucket_mount_is_refused_at_deploy_not_at_decoration() -> None:
    app = modal.App("opts")

    @app.function(volumes={"/bucket": modal.CloudBucketMount("my-bucket")})
    def f() -> None: ...

    with pytest.raises(InvalidError, match="does not mount cloud buckets"):
        app._payload()


def test_clustered_is_refused_at_deploy() -> None:
    app = modal.App("opts")

    @app.function()
    @modal.experimental.clustered(size=2)
    def f() -> None: ...

    with pytest.raises(InvalidError, match="gang"):
        app._payload()


def test_sandbox_says_it_is_not_part_of_rayfn() -> None:
    with pytest.raises(InvalidError, match="not part of rayfn"):
        modal.Sandbox.create("echo", "hi")


def test_file_pattern_matcher() -> None:
    matcher = modal.FilePatternMatcher("*.pyc", "build/", "!build/keep.txt", "**/secret*")
    assert matcher("a.pyc") and matcher("build/x.o") and matcher("a/b/secret.txt")
    assert not matcher("build/keep.txt") and not matcher("main.py")
    assert (~matcher)("main.py")


def test_mount_links_and_replaces_links_but_never_hides_files(tmp_path: Path) -> None:
    one, two, at = tmp_path / "v1", tmp_path / "v2", tmp_path / "mnt" / "data"
    mount(one, at)
    (at / "f").write_text("x")
    assert (one / "f").read_text() == "x"
    mount(two, at)  # the path was another volume's mount
    assert not (at / "f").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep").write_text("mine")
    with pytest.raises(modal.exception.ExecutionError, match="something is there"):
        mount(one, busy)
    assert (busy / "keep").read_text() == "mine"


def test_image_import_blocks_run_again_where_the_code_is_unpickled(tmp_path: Path) -> None:
    import importlib.util
    import subprocess
    import sys

    import cloudpickle

    from rayfn._deferred_imports import shipped_with_imports

    source = tmp_path / "usermod_imports.py"
    source.write_text(
        "import rayfn as modal\n"
        "image = modal.Image.debian_slim()\n"
        "with image.imports():\n"
        "    import json as only_in_image\n"
        "    import a_module_only_the_image_has\n"
        "def dumps():\n"
        "    return only_in_image.dumps([1])\n")
    spec = importlib.util.spec_from_file_location("usermod_imports", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["usermod_imports"] = module
    try:
        spec.loader.exec_module(module)  # the missing module is suppressed locally
        cloudpickle.register_pickle_by_value(module)
        blob = cloudpickle.dumps(shipped_with_imports(module.dumps))
    finally:
        cloudpickle.unregister_pickle_by_value(module)
        del sys.modules["usermod_imports"]
    blob_file = tmp_path / "blob"
    blob_file.write_bytes(blob)
    worker = subprocess.run(
        [sys.executable, "-c", "import cloudpickle, sys; "
         "cloudpickle.loads(open(sys.argv[1], 'rb').read())", str(blob_file)],
        capture_output=True, text=True, timeout=60)
    # In the worker the block runs again, and the module missing there is an error.
    assert "No module named 'a_module_only_the_image_has'" in worker.stderr
