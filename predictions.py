"""Rebuild the Kaggle submission from a checkpoint alone.

    python predictions.py --model runs/<name>/best.pt --out submission.csv
    python predictions.py --model runs/<name>/best.pt --library library.smi --out lib.csv   # any library
    python predictions.py --model best.pt --library big.shards --queries q.txt --top-k 100 --out top.csv
    python predictions.py --model best.pt --library raw.zip --top-k 10 --smiles --out top.csv   # + SMILES
"""
from molret.utils.errors import user_errors


@user_errors
def main(argv=None):
    from molret.cli.predictions import build_parser, predict
    args = build_parser().parse_args(argv)
    result = predict(args)
    if result.get("pool"):
        from molret.evaluation.pool import format_report
        n_val = result["pool"]["n_val"]
        claims = f" (claims bonus fused, weight {result['pool']['claims_weight']:g})" \
            if "claims_weight" in result["pool"] else ""
        print(f"pool: {n_val} val queries among {n_val + result['molecules']} val + test molecules{claims}")
        for line in format_report(result["pool"]):
            print("  " + line)
    if result.get("top_k"):
        columns = "query,rank,id,score" + (",smiles" if result.get("smiles") else "")
        print(f"wrote {result['out']}: the top {result['top_k']} of {result['molecules']} molecules for each of "
              f"{result['queries']} queries ({columns})")
        if result.get("smiles_decoded"):
            from molret.chem.graph_decoder import NO_STEREO_NOTE
            print(f"note: the SMILES were {NO_STEREO_NOTE}")
    else:
        print(f"wrote {result['out']}: {result['queries']} queries x {result['molecules']} molecules")
    if result.get("ids_file"):
        print(f"wrote {result['ids_file']}: the library id of each column (line i+1 = column i)")
    return result


if __name__ == "__main__":
    main()
