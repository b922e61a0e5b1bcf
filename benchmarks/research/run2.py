"""One arm in prefix mode (adapters on blocks FIRST..11).

python run2.py [--work DIR] [--model DIR] name=X lam=0.1 ... [first=10] [split=test] [evalonly=1]

Needs WORK/cache_KIND_SIZE.safetensors and WORK/probes_KIND_SIZE.npz (made by run.py name=base lam=-1) and
builds missing prefix caches WORK/prefix_{train,SPLIT}_kFIRST.safetensors directly (the reported train/val
ones came through k=8: build_prefix.py --via 8)."""
import json, os, sys, time
import lab, lab2
import common
from run import parse
from maa_train.students.adapter_config import AdapterConfig


def main():
    argv, flags = common.pop_flags(sys.argv[1:])
    lab.configure(flags)
    os.makedirs(f"{lab.ROOT}/results", exist_ok=True)
    os.makedirs(f"{lab.ROOT}/adapters", exist_ok=True)
    cfg, extra = parse(argv)
    first = int(extra.pop("first", lab2.FIRST))
    cfg["first"] = first
    logf = open(f"{lab.ROOT}/results/{cfg['name']}.log", "a")

    def log(s):
        print(s, flush=True); logf.write(s + "\n"); logf.flush()

    t0 = time.time()
    im, fl = lab.load_data(cfg["size"])
    model = lab.load_encoder(cfg["kind"])
    cache = common.load_tensors(f"{lab.ROOT}/cache_{cfg['kind']}_{cfg['size']}.safetensors")
    probes = common.load_probes(f"{lab.ROOT}/probes_{cfg['kind']}_{cfg['size']}.npz")
    split = extra.get("split", "val")
    tr = lab2.build_prefix(model, im, fl, "train", first)
    base_arm = cfg["lam"] < 0
    acfg = None if base_arm else AdapterConfig(bottleneck=cfg["bottleneck"], attn_dim=cfg["attn_dim"], heads=cfg["heads"],
                                               window=cfg["window"], use_attn=cfg["use_attn"], use_pool=cfg["use_pool"])
    net = lab2.PrefixNet(model, cfg["size"], acfg, first)
    res = {"cfg": cfg}
    apath = f"{lab.ROOT}/adapters/{cfg['name']}.safetensors"
    if base_arm:
        pass
    elif extra.get("evalonly"):
        net.adapters.load_state_dict(common.load_tensors(apath))
    else:
        assert cfg["variants"] <= lab2.V
        hist, gates, secs = lab.train(cfg, net, im, cache, log, inputs=tr["var"])
        common.save_tensors(apath, net.adapters.state_dict())
        res.update(hist=hist, gates=gates, train_s=secs)
        log(f"  trained in {secs:.0f}s; gates alpha_mlp " + " ".join(f"{g['alpha_mlp']:.3f}" for g in gates if g["alpha_mlp"] is not None)
            + " | alpha_pool " + " ".join(f"{g['alpha_pool']:.3f}" for g in gates if g["alpha_pool"] is not None))
    pre = lab2.build_prefix(model, im, fl, split, first)
    te = time.time()
    ev = lab2.evaluate2(net, fl, cache, probes, pre, tr["held"], base=base_arm)
    res[f"eval_{split}"] = ev
    res["eval_s"] = time.time() - te
    suffix = "" if split == "val" else f"_{split}"
    json.dump(res, open(f"{lab.ROOT}/results/{cfg['name']}{suffix}.json", "w"))
    log(f"{cfg['name']} [{split}] n={ev['n']} CLS Ref {ev['acc_cls_clean']*100:.1f} sev3 {ev['acc_cls_sev3']*100:.1f} "
        f"sev5 {ev['acc_cls_sev5']*100:.1f} | cls+mp {ev['acc_cls+mp_clean']*100:.1f}/{ev['acc_cls+mp_sev3']*100:.1f}/"
        f"{ev['acc_cls+mp_sev5']*100:.1f} | held mse {ev['held_mse']:.3f} mmd_tok {ev['held_mmd_tok']:.4f} "
        f"mmd_cls(sev5) {ev['mmd_cls_sev5']:.4f} clean-drift {ev['clean_consistency']:.3f} | eval {res['eval_s']:.0f}s total {time.time()-t0:.0f}s")


if __name__ == "__main__":
    main()
