"""sam-server's flags and SAM_* environment variables, its help, and what the flags do."""

from __future__ import annotations

import pytest

from backend.serving.cli import bind_address, build_parser, config_from_args
from backend.serving.config import ServerConfig
from tests.support.cli_help import assert_help_shows_defaults


def test_defaults_are_demo_on_localhost_9090(monkeypatch):
    for name in ("SAM_MODEL", "SAM_HOST", "SAM_PORT", "SAM_TOKEN", "SAM_CACHE_MB", "SAM_NO_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    config = config_from_args([])
    assert (config.model, config.host, config.port, config.token, config.plugins) == (
        "demo",
        "127.0.0.1",
        9090,
        None,
        True,
    )


def test_environment_variables_fill_every_setting(monkeypatch):
    env = {
        "SAM_MODEL": "vit_b",
        "SAM_DEVICE": "cpu",
        "SAM_DTYPE": "bfloat16",
        "SAM_HOST": "0.0.0.0",
        "SAM_PORT": "8001",
        "SAM_TOKEN": "t0k",
        "SAM_CACHE_MB": "64",
        "SAM_CACHE_DTYPE": "float16",
        "SAM_IMAGE_STORE_MB": "32",
        "SAM_LOGITS_STORE_MB": "16",
        "SAM_AUTOMASK_STORE_MB": "8",
        "SAM_MAX_PIXELS": "1000000",
        "SAM_LOG_LEVEL": "debug",
        "SAM_NO_PLUGINS": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = config_from_args([])
    assert (config.model, config.device, config.dtype, config.host, config.port) == (
        "vit_b",
        "cpu",
        "bfloat16",
        "0.0.0.0",
        8001,
    )
    stores = (config.cache_dtype, config.image_store_mb, config.logits_store_mb, config.automask_store_mb)
    assert stores == ("float16", 32, 16, 8)
    assert (config.token, config.cache_mb, config.max_pixels, config.log_level, config.plugins) == (
        "t0k",
        64,
        1_000_000,
        "DEBUG",
        False,
    )


def test_flags_override_environment(monkeypatch):
    monkeypatch.setenv("SAM_PORT", "8001")
    monkeypatch.setenv("SAM_MODEL", "vit_b")
    config = config_from_args(
        ["--port", "9999", "--model", "/tmp/x.pt", "--cache-mb", "10", "--no-plugins", "--max-batch", "1"]
    )
    assert (config.port, config.model, config.cache_mb, config.plugins, config.max_batch) == (
        9999,
        "/tmp/x.pt",
        10,
        False,
        1,
    )


def test_bad_flag_values_exit_with_usage(capsys):
    with pytest.raises(SystemExit):
        config_from_args(["--dtype", "int8"])
    assert "invalid choice" in capsys.readouterr().err


def test_bind_address_brackets_ipv6():
    assert bind_address("127.0.0.1", 9090) == "127.0.0.1:9090"
    assert bind_address("::1", 9090) == "[::1]:9090"


def test_help_shows_every_default_and_no_docstring_markup(monkeypatch):
    monkeypatch.delenv("SAM_TOKEN", raising=False)
    assert_help_shows_defaults(build_parser())
    assert "``" not in build_parser().format_help()


def test_the_token_never_shows_in_help(monkeypatch):
    monkeypatch.setenv("SAM_TOKEN", "s3cret-token")
    assert "s3cret-token" not in build_parser().format_help()
    assert config_from_args([]).token == "s3cret-token"


def test_clip_weights_options_reach_the_config(monkeypatch, tmp_path):
    monkeypatch.setenv("SAM_CLIP_ROOT", str(tmp_path / "env"))
    assert config_from_args([]).clip_root == str(tmp_path / "env")
    config = config_from_args(["--clip-root", str(tmp_path), "--clip-model", "ViT-L/14"])
    assert (config.clip_root, config.clip_model) == (str(tmp_path), "ViT-L/14")


def test_the_server_reads_clip_weights_from_clip_root(tiny_sam, tmp_path):
    pytest.importorskip("clip")
    from backend.serving.app import create_app
    from tests.serving.tiny_model import make_config, picture, png_bytes

    empty = tmp_path / "clip-weights"
    app = create_app(make_config(tiny_sam, clip_root=str(empty)))
    try:
        client = app.test_client()
        image_id = client.post("/v1/images", data=png_bytes(picture())).json["image_id"]
        low = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
        assert client.post("/v1/automask", json={"image_id": image_id, **low}).json["records"]
        response = client.post("/v1/predict", json={"image_id": image_id, "text": "cat"})
    finally:
        app.extensions["sam_service"].close()
    assert response.status_code == 503 and response.json["error"] == "weights_unavailable"
    detail = response.json["detail"]  # the file's name; its folder is the server's business (logged)
    assert "ViT-B-32.pt" in detail and str(empty) not in detail


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--max-batch", "-1", "must be >= 0"),
        ("--port", "0", "must be >= 1"),
        ("--threads", "x", "not a whole"),
    ],
)
def test_bad_numbers_name_the_flag(capsys, flag, value, says):
    with pytest.raises(SystemExit):
        config_from_args([flag, value])
    err = capsys.readouterr().err
    assert flag in err and says in err


def _max_batch_help() -> str:
    [action] = [a for a in build_parser()._actions if "--max-batch" in a.option_strings]
    return " ".join(str(action.help).split())


def test_max_batch_help_says_what_the_server_does_on_a_cpu():
    from backend.model import SamConfig, ViTConfig, build_sam
    from backend.serving.service import SamService

    text = _max_batch_help()
    assert "0 = auto" in text and "16 on a GPU" in text
    assert "16 for the demo model" in text and "1 for vit_b" in text
    sam_sized_decoder = SamConfig(  # SAM's 64x64x256 image tokens, with a tiny encoder
        vit=ViTConfig(embed_dim=32, depth=1, num_heads=2, global_attn_indexes=(0,), window_size=8),
        image_size=1024,
        decoder_mlp_dim=64,
    )
    for model, expected in (("demo", 16), (build_sam(sam_sized_decoder).eval(), 1)):
        service = SamService(ServerConfig(model=model, device="cpu", max_batch=0, plugins=False)).start()
        try:
            assert service.wait_ready(120), service.load_error
            assert service.models()[0]["max_batch"] == expected
        finally:
            service.close()


def test_docs_list_every_flag_and_say_what_auto_max_batch_does():
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "server.md").read_text()
    rows = {
        line.split("|")[1].strip().strip("`"): line for line in docs.splitlines() if line.startswith("| `--")
    }
    flags = {
        f for a in build_parser()._actions for f in a.option_strings if f.startswith("--") and f != "--help"
    }
    assert flags == set(rows), flags ^ set(rows)
    max_batch_row = " ".join(rows["--max-batch"].split())
    assert "16 on a GPU" in max_batch_row and "16 for the demo model" in max_batch_row
    assert "1 for `vit_b`" in max_batch_row


def test_start_up_warns_when_the_given_clip_weights_are_missing(tmp_path, caplog):
    pytest.importorskip("clip")
    from backend.serving.cli import warn_about_clip

    warn_about_clip(config_from_args(["--clip-root", str(tmp_path)]))
    [record] = [r for r in caplog.records if r.name == "backend.serving.cli"]
    assert record.levelname == "WARNING" and str(tmp_path / "ViT-B-32.pt") in record.getMessage()


def test_model_repeated_or_comma_separated_serves_several_the_first_by_default(monkeypatch):
    config = config_from_args(["--model", "vit_b", "--model", "sam2.1_hiera_t"])
    assert (config.model, config.extra_models) == ("vit_b", ("sam2.1_hiera_t",))
    monkeypatch.setenv("SAM_MODEL", "demo, sam2.1_hiera_s")
    assert config_from_args([]).models == ("demo", "sam2.1_hiera_s")
    assert config_from_args(["--model", "vit_t"]).models == ("vit_t",), "the flag wins over the variable"


@pytest.mark.parametrize(
    ("argv", "variable", "says"),
    [
        (
            ["--model", "demo", "--model", "demo"],
            None,
            "each model may be served once; demo name the same model more than once",
        ),
        ([], "demo,demo", "each model may be served once"),
        ([], " , ", "SAM_MODEL names no model"),
    ],
)
def test_a_model_list_that_cannot_be_served_is_a_usage_error(monkeypatch, capsys, argv, variable, says):
    if variable is not None:
        monkeypatch.setenv("SAM_MODEL", variable)
    with pytest.raises(SystemExit) as exit_info:
        config_from_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"sam-server: error: {says}" in err and "Traceback" not in err


def test_help_shows_the_model_sam_model_names(monkeypatch, capsys):
    monkeypatch.setenv("SAM_MODEL", "vit_b")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    assert "(default: vit_b)" in " ".join(capsys.readouterr().out.split())


def test_an_empty_model_flag_is_a_usage_error_and_names_are_stripped(capsys):
    with pytest.raises(SystemExit) as exit_info:
        config_from_args(["--model", " "])
    assert exit_info.value.code == 2 and "--model needs a model name" in capsys.readouterr().err
    assert config_from_args(["--model", " demo "]).models == ("demo",)


def test_one_file_under_two_spellings_is_served_once(tmp_path, monkeypatch, capsys):
    (tmp_path / "m.pt").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        config_from_args(["--model", "m.pt", "--model", str(tmp_path / "m.pt")])
    assert exit_info.value.code == 2 and "name the same model more than once" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--image-store-mb", "--logits-store-mb"])
def test_store_budgets_that_would_hold_nothing_are_refused(flag, capsys):
    with pytest.raises(SystemExit):
        config_from_args([flag, "0"])
    assert flag in capsys.readouterr().err
