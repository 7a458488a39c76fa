# ab46.sh ROUNDS: interleaved run44.sh rounds (18k x RATE/s admin, 195 ms for holdfast) of uWebSockets
# and each holdfast build in LIST (TAG:BINDIR ...; default: base = phases strided by slot, i mod
# steps, before the change; group = runs of 8 neighbouring slots share a phase), one meter line per
# run; with COUNT=1 each run is a count44.sh run instead (server CPU per send). NOUWS=1 skips uWebSockets.
D=${D44:-bench/results/2026-12-05-tuned-44-scripts}; N=$1
R=run44.sh; [ -n "$COUNT" ] && R=count44.sh
LIST=${LIST:-base:/tmp/hf46-base group:/tmp/hf46-group}
for r in $(seq $N); do
  [ -z "$NOUWS" ] && bash $D/$R uws uws-$r
  for c in $LIST; do BIN=${c#*:} bash $D/$R ${IV:-195ms} ${c%%:*}-$r; done
done
