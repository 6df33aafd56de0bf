"""`dittomusic ui`: the web app."""

from __future__ import annotations

import click

from .core import cli, friendly, vocoder_option


@cli.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on (127.0.0.1: this machine only; 0.0.0.0 opens it to the network).")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False),
              help="Base model safetensors [default: the bundled model].")
@click.option("--student", default=None,
              help="DITTO-2's distilled student for --model: a release file, a distill run folder, or cd / ctd "
                   "[default: the bundled CTD student, distilled from the bundled model].")
@click.option("--outputs", default=None, type=click.Path(file_okay=False),
              help="Folder for the results [default: a new temporary folder].")
@click.option("--device", default=None, help="cpu, cuda ... [default: cuda if available].")
@vocoder_option
@friendly
def ui_cmd(host, port, model_path, student, outputs, device, vocoder):
    """Start the web app: draw, type or upload a control, hear the result.

    The page is served first and the model loads behind it, once; jobs run one at a time, the
    others wait in a queue that shows their position."""
    from dittomusic.app.catalog import start_catalog
    from dittomusic.app.model import ModelLoader, check_model_file

    check_model_file(model_path)  # the header only: a missing or foreign file fails here, at once
    pending = start_catalog(model_path, vocoder)  # torch, in a child, while this process imports gradio
    from dittomusic.app.ui import build_app, launch

    app, demo = build_app(ModelLoader(model_path, device, vocoder), catalog=pending.result(), student=student,
                          out_dir=outputs, default_model=model_path is None, vocoder=vocoder)
    click.echo(f"dittomusic ui: http://{host}:{port}  (results in {app.out_dir}; Ctrl+C stops it)", err=True)
    launch(demo, app, host=host, port=port)
