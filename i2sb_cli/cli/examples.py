"""The "Examples" that end every command's --help: what each is for, and a line to copy.

Kept in one table so that a test can parse every example line against the real commands
(tests/test_cli_surface.py): an example that stops working fails the suite.
"""

from rich.markup import escape

EXAMPLES: dict[str, tuple[tuple[str, str], ...]] = {
    "i2sb": (
        (
            "Upscale a photo 4x; writes photo_restored.jpg beside it",
            "i2sb restore photo.jpg --task sr4x",
        ),
        ("Every known model, and what it is good for", "i2sb models list"),
        ("Each command's options and examples", "i2sb restore --help"),
        ("Tab completion for your shell", "i2sb --install-completion"),
    ),
    "restore": (
        (
            "Upscale a photo 4x; writes photo_restored.jpg beside it",
            "i2sb restore photo.jpg --task sr4x",
        ),
        (
            "Deblur a folder tree into another, mirroring its sub-folders",
            "i2sb restore scans/ -r -o sharp/ --task deblur",
        ),
        (
            "Fill the holes a mask marks in white",
            "i2sb restore photo.png --task inpaint --mask holes.png",
        ),
        (
            "Remove JPEG artefacts from a pipe into a pipe (PNG out)",
            "cat in.jpg | i2sb restore - --task jpeg > out.png",
        ),
        (
            "Sharpen, averaging each step over 4 mirror images (closer, 4x the time)",
            "i2sb restore soft.jpg --task deblur --ensemble 4",
        ),
        (
            "2x from the 4x model, named photo_x2.jpg",
            "i2sb restore photo.jpg --task sr4x --outscale 2 --suffix _x2",
        ),
        (
            "Cover a logo's halo and soften the seam",
            "i2sb restore photo.png --task inpaint --mask logo.png --mask-dilate 6 "
            "--mask-feather 4",
        ),
        (
            "Name outputs by a template; list the plan first, loading nothing",
            "i2sb restore scans/ -r -o 'out/{parent}/{stem}_x4.{ext}' --task sr4x --dry-run",
        ),
    ),
    "degrade": (
        (
            "Test pairs for 4x super-resolution (sr4x: the bundled model's sr4x-bicubic)",
            "i2sb degrade photos/ -r -o pairs/ --task sr4x",
        ),
        (
            "Restore them, to score with i2sb evaluate pairs/ restored/",
            "i2sb restore pairs/degraded -r -o restored/ --task sr4x",
        ),
        (
            "Free-form holes, the masks drawn from seed 3",
            "i2sb degrade photos/ -o holes/ --task inpaint-freeform1020 --seed 3",
        ),
        ("Real JPEG files at quality 20", "i2sb degrade photos/ -o jpeg20/ --task jpeg-real-20"),
    ),
    "evaluate": (
        (
            "Score restorations beside the classical baseline (a table on stderr)",
            "i2sb evaluate pairs/ restored/",
        ),
        (
            "One JSON object per picture, then the means",
            "i2sb evaluate pairs/ restored/ --json > scores.jsonl",
        ),
        ("PSNR and SSIM only", "i2sb evaluate pairs/ restored/ --no-perceptual"),
    ),
    "compare": (
        (
            "Degraded | baseline | yours | original, one row per picture",
            "i2sb compare pairs/ -o grid.png --column ours=restored/",
        ),
        (
            "Two NFE side by side, a 96x96 crop enlarged",
            "i2sb compare pairs/ -o grid.png --column nfe2=r2/ --column nfe10=r10/ --crop 96",
        ),
        (
            "Only two of the pictures",
            "i2sb compare pairs/ -o grid.png --column ours=restored/ --names a.png --names b.png",
        ),
    ),
    "benchmark": (
        (
            "The bundled sr4x model on a 512x512 picture at 10 NFE",
            "i2sb benchmark --size 512 --nfe 10",
        ),
        (
            "Two backends, the JSON report into a file",
            "i2sb benchmark --model jpeg-p2 --backend torch --backend onnxruntime -o bench.json",
        ),
        (
            "Which of two configurations is faster, run alternately",
            "i2sb benchmark --compare torch+nchw onnxruntime --size 512",
        ),
    ),
    "export": (
        (
            "An ONNX file of a bundled model, checked against PyTorch",
            "i2sb export --model sr4x-p4 -o sr4x-p4.onnx",
        ),
        ("Restore with it (ONNX Runtime)", "i2sb restore photo.jpg --model sr4x-p4.onnx"),
        (
            "Your own checkpoint for torch.export",
            "i2sb export --model runs/mine.safetensors -o mine.pt2 --format pt2",
        ),
    ),
    "train": (
        (
            "Train a small 4x model; the same line continues it after Ctrl-C",
            "i2sb train photos/ -o sr4x.safetensors --task sr4x-bicubic --steps 4000 --resume",
        ),
        (
            "A mixture of two JPEG degradations, validated on held-out photos",
            "i2sb train photos/ -o jpeg.safetensors --task jpeg-10 --task jpeg-real-10 --val val/",
        ),
        (
            "Your own pairs, matched by name",
            "i2sb train -o mine.safetensors --pairs clean/ blurred/ --task deblur",
        ),
    ),
    "models": (
        ("Every known model, and what is on disk", "i2sb models list"),
        ("What a model was trained on and how it scores", "i2sb models info deblur-tiny"),
        (
            "Convert an official checkpoint folder into the cache",
            "i2sb models import results/sr4x-pool",
        ),
    ),
    "models list": (
        ("Every known model, what it is good for, and what is on disk", "i2sb models list"),
        ("The same for scripts", "i2sb models list --json"),
    ),
    "models info": (
        ("What a bundled model was trained on and how it scores", "i2sb models info deblur-tiny"),
        ("Where to get an official checkpoint", "i2sb models info official-sr4x-pool"),
    ),
    "models download": (
        (
            "A checkpoint of our format from anywhere, pinned by its hash",
            "i2sb models download https://example.org/mine.safetensors --sha256 HASH --name mine",
        ),
        ("Then use it by name", "i2sb restore photo.jpg --model mine"),
    ),
    "models import": (
        (
            "An official folder (latest.pt + options.pkl) from the page in models info",
            "i2sb models import results/sr4x-pool",
        ),
        ("Then restore with it", "i2sb restore photo.png --model official-sr4x-pool"),
        (
            "Under a name of your own, 50 NFE by default",
            "i2sb models import results/blur-uni --name blur-uni-50 --nfe 50",
        ),
    ),
    "models verify": (
        ("Re-hash every model on disk", "i2sb models verify"),
        ("Only these", "i2sb models verify sr4x-p4 official-sr4x-pool"),
    ),
    "models path": (
        ("Where a model's file is", "i2sb models path sr4x-p4"),
        ("Exit code 1 when it is not on disk, for scripts", "i2sb models path official-sr4x-pool"),
    ),
    "models rm": (
        ("Free the space of one model", "i2sb models rm official-sr4x-pool"),
        ("Empty the cache (bundled models stay)", "i2sb models rm --all"),
    ),
    "help": (
        ("The tasks restore takes, and the model each one runs", "i2sb help tasks"),
        ("Every topic", "i2sb help"),
    ),
}

# Where a command's --help points for the longer story (i2sb help TOPIC, help_topics.py).
SEE_ALSO = {
    "restore": "i2sb help tasks, sampling, masks, outputs or speed, and the README.",
}


def epilog(command: str) -> str:
    """The Examples section of a command's help ("restore", "models info", or "i2sb")."""
    lines = [f"  [dim]# {escape(what)}[/]\n  {escape(line)}" for what, line in EXAMPLES[command]]
    # Typer dedents help text by the indentation of its lines after the first: the unindented
    # heading on the second line keeps the examples indented.
    text = "\n[bold]Examples[/]\n" + "\n".join(lines)
    if command in SEE_ALSO:
        text += f"\n\n[bold]More help[/]: {escape(SEE_ALSO[command])}"
    return text
