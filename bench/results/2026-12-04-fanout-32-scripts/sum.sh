cd /tmp/cmp
for f in $(ls $1*.out); do
 p=$(grep -oE "p50 [0-9.]+ p90 [0-9.]+ p99 [0-9.]+" $f | awk '{printf "p50 %.0f p99 %.0f", $2/1000, $6/1000}')
 r=$(grep -oE "[0-9.]+ deliveries per read" $f | awk '{print $1}')
 c=$(grep -oE "server CPU [0-9.]+ s = [0-9]+" $f | awk '{printf "cpu %s per-cpu %.2fM", $3, $6/1e6}')
 echo "$(basename $f .out) | $p | fps $r | $c"
done
