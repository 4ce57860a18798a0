# Enslave dummy0 to bond0 in mode $1 (bond_enslave, which updates the slave
# array for xmit-hash and broadcast modes), send through it, release it.
B=/sys/class/net/bond0/bonding
ip link set bond0 down
echo $1 > $B/mode
grep -q "^$1 " $B/mode
ip link set dummy0 down
echo +dummy0 > $B/slaves
ip link set bond0 up
grep -qx dummy0 $B/slaves
ip addr add 192.0.2.1/24 dev bond0
ping -c 1 -W 1 192.0.2.2 >/dev/null 2>&1 || true
ip addr del 192.0.2.1/24 dev bond0
echo -dummy0 > $B/slaves
! grep -q dummy0 $B/slaves
ip link set bond0 down
