# r.sh ROUNDS TAGPREFIX : interleaved base/new/uws rounds, env passed to ab.sh
cd /work/main
for r in $(seq $1); do
  for k in base:/tmp/hf52d new:/tmp/hf53a uws:uws; do
    n=${k%%:*}; d=${k#*:}
    bash bench/results/2026-12-06-wakes-52-scripts/ab.sh $d $2-$n-$r $([ $n != uws ] && echo $HF_ARGS) 2>&1 | grep -E "^holdfast-w|^$2|syscr" | sed "s/^/[$n] /"
  done
done
