# tune44.sh on|off|save: apply tuning/c1m.conf (on), restore the values saved before (off),
# or save the current values of every key c1m.conf names (save; run once before any "on").
F=$(dirname $0)/../../../tuning/c1m.conf; K=/tmp/tune44.saved
case $1 in
save) grep -v '^#' $F | grep = | cut -d= -f1 | tr -d ' ' | while read k; do
        v=$(sysctl -n $k 2>/dev/null) && echo "$k = $v"; done > $K ;;
on)   sysctl -q -p $F 2>/dev/null || true ;;
off)  sysctl -q -p $K ;;
esac
