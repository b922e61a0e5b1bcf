"""One arm: python run.py [--work DIR] [--model DIR] name=X lam=0.1 seed=0 ... (see lab.DEFAULTS).
lam<0 -> base (no training). Full forward (adapters on every block, forward pre-hooks).

Builds (once) the teacher cache WORK/cache_KIND_SIZE.safetensors and the probes WORK/probes_KIND_SIZE.npz.
Writes WORK/results/NAME.json (config, history, gates, eval on cfg.eval_split) and WORK/adapters/NAME.safetensors.
`evalonly=1 split=test` re-evaluates saved adapters on another split."""
import json, os, sys, time
import lab
import common
from maa_train.students.adapter_config import AdapterConfig


def parse(argv):
    cfg = dict(lab.DEFAULTS)
    extra = {}
    for a in argv:
        k, v = a.split("=", 1)
        target = cfg if k in cfg else extra
        base = cfg.get(k)
        if isinstance(base, bool):
            v = v.lower() in ("1", "true", "yes")
        elif isinstance(base, int):
            v = int(float(v))
        elif isinstance(base, float):
            v = float(v)
        else:
            try:
                v = float(v) if "." in v or "e" in v else int(v)
            except ValueError:
                pass
        target[k] = v
    return cfg, extra


def main():
    argv, flags = common.pop_flags(sys.argv[1:])
    lab.configure(flags)
    cfg, extra = parse(argv)
    os.makedirs(f"{lab.ROOT}/results", exist_ok=True)
    os.makedirs(f"{lab.ROOT}/adapters", exist_ok=True)
    logf = open(f"{lab.ROOT}/results/{cfg['name']}.log", "a")

    def log(s):
        print(s, flush=True); logf.write(s + "\n"); logf.flush()

    t0 = time.time()
    im, fl = lab.load_data(cfg["size"])
    model = lab.load_encoder(cfg["kind"])
    base = lab.Adapted(model, cfg["size"], None)
    cache = lab.build_cache(cfg["kind"], cfg["size"], base, im, fl)
    base.remove()
    ppath = f"{lab.ROOT}/probes_{cfg['kind']}_{cfg['size']}.npz"
    if os.path.exists(ppath):
        probes = common.load_probes(ppath)
    else:
        probes = lab.fit_probes(cache, fl); common.save_probes(ppath, probes)
    base_arm = cfg["lam"] < 0
    acfg = None if base_arm else AdapterConfig(bottleneck=cfg["bottleneck"], attn_dim=cfg["attn_dim"], heads=cfg["heads"],
                                               window=cfg["window"], use_attn=cfg["use_attn"], use_pool=cfg["use_pool"])
    net = lab.Adapted(model, cfg["size"], acfg)
    split = extra.get("split", cfg["eval_split"])
    res = {"cfg": cfg}
    apath = f"{lab.ROOT}/adapters/{cfg['name']}.safetensors"
    if base_arm:
        pass
    elif extra.get("evalonly"):
        net.adapters.load_state_dict(common.load_tensors(apath))
    else:
        hist, gates, secs = lab.train(cfg, net, im, cache, log)
        common.save_tensors(apath, net.adapters.state_dict())
        res.update(hist=hist, gates=gates, train_s=secs)
        log(f"  trained in {secs:.0f}s; gates alpha_mlp " +
            " ".join(f"{g['alpha_mlp']:.3f}" for g in gates if g["alpha_mlp"] is not None))
    net.adapters.eval()
    ev = lab.evaluate(net, fl, cache, probes, split, im["held"], active=not base_arm)
    res[f"eval_{split}"] = ev
    out = f"{lab.ROOT}/results/{cfg['name']}" + ("" if split == cfg["eval_split"] and not extra.get("evalonly") else f"_{split}") + ".json"
    json.dump(res, open(out, "w"))
    log(f"{cfg['name']} [{split}] n={ev['n']} CLS Ref {ev['acc_cls_clean']*100:.1f} sev3 {ev['acc_cls_sev3']*100:.1f} "
        f"sev5 {ev['acc_cls_sev5']*100:.1f} | cls+mp {ev['acc_cls+mp_clean']*100:.1f}/{ev['acc_cls+mp_sev3']*100:.1f}/"
        f"{ev['acc_cls+mp_sev5']*100:.1f} | held mse {ev['held_mse']:.3f} mmd_tok {ev['held_mmd_tok']:.4f} "
        f"mmd_cls(sev5) {ev['mmd_cls_sev5']:.4f} | total {time.time()-t0:.0f}s")


if __name__ == "__main__":
    main()
