"""Train the course's text-to-image emoji model (data/models/emoji-sd) from the shipped emoji, phase by phase.

Each phase saves a checkpoint every --save_every steps and on Ctrl-C or SIGTERM (in <work_dir>/<phase>-run/checkpoints,
written atomically by the course's training runtime), and continues from the newest one when run again, so a long run
survives interruptions, even a kill during a save. Run from the repository root, one phase at a time (two phases can
run side by side on two cores: `decoder` and `unet` both need only the `vae` phase's output):

  python scripts/train_emoji_models.py vae --steps 900        # encoder + decoder; then the latents and scaling factor
  python scripts/train_emoji_models.py decoder --steps 2500   # the decoder alone; the latents stay fixed
  python scripts/train_emoji_models.py unet --steps 5400      # text encoder + UNet, caption dropout, EMA
  python scripts/train_emoji_models.py export                 # assemble, save to data/models/emoji-sd
  python scripts/train_emoji_models.py sd3 --steps 16000      # emoji-sd3's MMDiT by flow matching on emoji-sd's parts
  python scripts/train_emoji_models.py export-sd3             # save to data/models/emoji-sd3

The pixel-space emoji-ddpm is trained by lesson 05's trainer (scripts/train_ddpm.py) and exported by
`python scripts/train_emoji_models.py export-ddpm`; `make models` runs everything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from course_utils import text_to_image as t2i  # noqa: E402
from course_utils.folders import load_emoji_tensors  # noqa: E402
from course_utils.training import runs, runtime  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {  # batch size, peak learning rate and warm-up steps of each phase
    "vae": dict(batch_size=32, lr=1e-3, warmup=100),
    "decoder": dict(batch_size=32, lr=5e-4, warmup=50),
    "unet": dict(batch_size=64, lr=6e-4, warmup=200, caption_dropout=0.1, ema_decay=0.999),
    "sd3": dict(batch_size=32, lr=1e-3, warmup=200, caption_dropout=0.1, ema_decay=0.999),
}


def _lr_lambda(warmup: int):
    return lambda step: min(1.0, (step + 1) / warmup)


def _log(work: Path, phase: str, **values) -> None:
    with open(work / "log.jsonl", "a") as f:
        f.write(json.dumps({"phase": phase, "time": time.time(), **values}) + "\n")


def _resume(run_dir: Path, phase: str, models: dict, optimizer, scheduler, extra) -> tuple[int, float]:
    """Load the phase's newest complete checkpoint, if there is one; return (step, seconds of training so far)."""
    found = runs.checkpoints(run_dir)
    if not found:
        return 0, 0.0
    state = runtime.read_state_file(found[-1])
    for name, model in models.items():
        model.load_state_dict(state[name])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if extra is not None:
        extra.load_state_dict(state["extra"])
    print(f"{phase}: resumed at step {state['step']} ({state['seconds'] / 60:.1f} min of training so far)")
    return state["step"], state["seconds"]


def _loop(phase: str, work: Path, steps: int, save_every: int, params, models: dict, step_fn, extra=None) -> int:
    """The shared loop: AdamW with warm-up, resume from the newest checkpoint in work/<phase>-run/checkpoints, save
    every save_every steps and on Ctrl-C or SIGTERM (the course's runtime writes each checkpoint atomically)."""
    settings = SETTINGS[phase]
    optimizer = torch.optim.AdamW(params, lr=settings["lr"], weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(settings["warmup"]))
    run_dir = work / f"{phase}-run"  # its checkpoints: <phase>-run/checkpoints/checkpoint-<step>
    step, seconds = _resume(run_dir, phase, models, optimizer, scheduler, extra)

    def save() -> None:
        state = {name: model.state_dict() for name, model in models.items()}
        state.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), step=step, seconds=seconds)
        if extra is not None:
            state["extra"] = extra.state_dict()
        runtime.save_checkpoint(run_dir, step, lambda folder: runtime.write_state_file(folder, state), keep=2)

    bar = tqdm(total=steps, initial=step, desc=phase, mininterval=10)
    with runtime.StopRequest(print) as stop:
        while step < steps and not stop.requested():
            started = time.perf_counter()
            loss = step_fn(step, runtime.step_generator(0, step))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            if extra is not None:
                extra.step(params)
            step += 1
            seconds += time.perf_counter() - started
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            if step % 50 == 0:
                _log(work, phase, step=step, loss=loss.item(), seconds=seconds)
            if step % save_every == 0:
                save()
        bar.close()
        if step % save_every:
            save()
    print(f"{phase}: step {step} of {steps}, {seconds / 60:.1f} min of training")
    return step


def emoji(limit: int | None) -> tuple[torch.Tensor, list[str]]:
    """The shipped emoji and captions, or only the first `limit` of them (quick checks)."""
    images, captions = load_emoji_tensors()
    return (images[:limit], captions[:limit]) if limit else (images, captions)


def run_vae(work: Path, steps: int, save_every: int, limit: int | None = None) -> None:
    """Encoder and decoder together; at the end, every image's latent distribution and the scaling factor."""
    images, _ = emoji(limit)
    torch.manual_seed(0)
    vae = t2i.make_vae()
    batch = SETTINGS["vae"]["batch_size"]

    def step_fn(step: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(images), (batch,), generator=generator)
        return t2i.vae_loss(vae, images[idx], generator)[0]

    done = _loop("vae", work, steps, save_every, list(vae.parameters()), {"vae": vae}, step_fn)
    if done < steps:
        return
    vae.eval()
    means, stds = t2i.encode_all(vae, images)
    factor = t2i.scaling_factor(means, stds)
    torch.save({"means": means, "stds": stds, "scaling_factor": factor}, work / "latents.pt")
    vae.save_pretrained(work / "vae-stage1")
    print(f"vae: scaling_factor {factor:.4f}; latents of {len(images)} images saved")


def run_decoder(work: Path, steps: int, save_every: int, limit: int | None = None) -> None:
    """The decoder alone, on latents sampled from the fixed encoder's distributions."""
    from diffusers import AutoencoderKL

    images, _ = emoji(limit)
    vae = AutoencoderKL.from_pretrained(work / "vae-stage1")
    latents = torch.load(work / "latents.pt")
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    batch = SETTINGS["decoder"]["batch_size"]

    def step_fn(step: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(images), (batch,), generator=generator)
        z = latents["means"][idx] + latents["stds"][idx] * torch.randn(latents["means"][idx].shape, generator=generator)
        return t2i.decoder_loss(vae, z, images[idx])

    _loop("decoder", work, steps, save_every, params, {"vae": vae}, step_fn)
    vae.save_pretrained(work / "vae")  # also after a stop: the export takes the decoder as far as it got


def run_unet(work: Path, steps: int, save_every: int, limit: int | None = None) -> None:
    """Text encoder and UNet together on the fixed latents, 10% of captions dropped, EMA of both."""
    from diffusers.training_utils import EMAModel

    from course_utils.models.standins import clip_tokenizer

    _, captions = emoji(limit)
    latents = torch.load(work / "latents.pt")
    input_ids = t2i.tokenize(clip_tokenizer(), captions)
    empty_ids = t2i.tokenize(clip_tokenizer(), [""])
    torch.manual_seed(0)
    text_encoder, unet, scheduler = t2i.make_text_encoder(), t2i.make_unet(), t2i.make_scheduler()
    params = list(text_encoder.parameters()) + list(unet.parameters())
    ema = EMAModel(params, decay=SETTINGS["unet"]["ema_decay"])
    settings = SETTINGS["unet"]

    def step_fn(step: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(captions), (settings["batch_size"],), generator=generator)
        mean, std = latents["means"][idx], latents["stds"][idx]
        z = (mean + std * torch.randn(mean.shape, generator=generator)) * latents["scaling_factor"]
        ids = t2i.drop_captions(input_ids[idx], empty_ids, settings["caption_dropout"], generator)
        return t2i.text_to_image_loss(unet, text_encoder, scheduler, z, ids, generator)

    _loop("unet", work, steps, save_every, params, {"text_encoder": text_encoder, "unet": unet}, step_fn, extra=ema)


def sd3_inputs(work: Path, limit: int | None) -> dict:
    """What the sd3 phase trains on, all from the shipped emoji-sd, whose VAE and text encoder stay frozen (as SD3
    kept its pretrained encoders frozen): every emoji's latent distribution with SD3's shift and scaling factors
    measured on them, and every caption's CLIP rows and pooled vector in StableDiffusion3Pipeline's layout."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel

    from course_utils import flow_matching as fm
    from course_utils.models.emoji import shipped_model
    from course_utils.models.standins import clip_tokenizer

    images, captions = emoji(limit)
    folder = shipped_model("emoji-sd")
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
    encoder = fm.with_projection(CLIPTextModel.from_pretrained(folder, subfolder="text_encoder"))
    means, stds = t2i.encode_all(vae, images)
    scale, shift = fm.latent_factors(means, stds)
    (work / "sd3-factors.json").write_text(json.dumps({"scaling_factor": scale, "shift_factor": shift}) + "\n")
    rows, pooled = fm.clip_embeds([encoder, encoder], t2i.tokenize(clip_tokenizer(), captions))
    empty_rows, empty_pooled = fm.clip_embeds([encoder, encoder], t2i.tokenize(clip_tokenizer(), [""]))
    return dict(
        means=means, stds=stds, scale=scale, shift=shift, rows=rows, pooled=pooled, empty=(empty_rows, empty_pooled)
    )


def run_sd3(work: Path, steps: int, save_every: int, limit: int | None = None) -> None:
    """emoji-sd3's MMDiT by flow matching on the frozen emoji-sd parts, 10% of captions dropped, EMA. Training uses
    shift 1 (plain logit-normal sigmas): the SD3 paper shifts towards noise for large images, and 64 tokens are few."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.training_utils import EMAModel

    from course_utils import flow_matching as fm

    data = sd3_inputs(work, limit)
    torch.manual_seed(0)
    transformer, scheduler = fm.make_transformer(), FlowMatchEulerDiscreteScheduler(shift=1.0)
    transformer.set_attn_processor(fm.RepeatedLastRowAttnProcessor())  # 77 + 1 rows stand for 77 + 256
    params = list(transformer.parameters())
    settings = SETTINGS["sd3"]
    ema = EMAModel(params, decay=settings["ema_decay"])
    empty_rows, empty_pooled = data["empty"]

    def step_fn(step: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(data["rows"]), (settings["batch_size"],), generator=generator)
        mean, std = data["means"][idx], data["stds"][idx]
        z = (mean + std * torch.randn(mean.shape, generator=generator) - data["shift"]) * data["scale"]
        drop = torch.rand(len(idx), generator=generator) < settings["caption_dropout"]
        rows = torch.where(drop[:, None, None], empty_rows, data["rows"][idx])
        pooled = torch.where(drop[:, None], empty_pooled, data["pooled"][idx])
        return fm.flow_matching_loss(transformer, scheduler, z, fm.without_t5(rows, rows=1), pooled, generator)

    _loop("sd3", work, steps, save_every, params, {"transformer": transformer}, step_fn, extra=ema)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=("vae", "decoder", "unet", "sd3", "export", "export-ddpm", "export-sd3"))
    parser.add_argument("--steps", type=int, default=None, help="total steps of the phase (a resumed run counts on)")
    parser.add_argument("--save_every", type=int, default=200)
    parser.add_argument("--work_dir", default=str(ROOT / "build" / "emoji-train"))
    parser.add_argument(
        "--ddpm_run",
        default=str(ROOT / "build" / "emoji-ddpm-train"),
        help="export-ddpm: the output_dir of the scripts/train_ddpm.py run",
    )
    parser.add_argument("--models_dir", default=None, help="export: where to save (default: data/models)")
    parser.add_argument("--images", type=int, default=None, help="train on the first N emoji only (quick checks)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one is fastest on shared cores)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    _log(
        work,
        args.phase,
        event="start",
        steps=args.steps,
        threads=args.threads,
        machine=platform.processor() or platform.machine(),
        cpus=os.cpu_count(),
        torch=torch.__version__,
    )
    if args.phase.startswith("export"):
        from export_emoji_models import export_emoji_ddpm, export_emoji_sd, export_emoji_sd3  # scripts/, beside this

        from course_utils.models.emoji import models_dir

        out = Path(args.models_dir) if args.models_dir else models_dir()
        if args.phase == "export":
            export_emoji_sd(work, out / "emoji-sd")
        elif args.phase == "export-sd3":
            export_emoji_sd3(work, out / "emoji-sd3", models_dir() / "emoji-sd")  # its VAE and text encoder
        else:
            export_emoji_ddpm(Path(args.ddpm_run), out / "emoji-ddpm")
        return
    if args.steps is None:
        parser.error(f"{args.phase} needs --steps")
    {"vae": run_vae, "decoder": run_decoder, "unet": run_unet, "sd3": run_sd3}[args.phase](
        work, args.steps, args.save_every, args.images
    )


if __name__ == "__main__":
    main()
