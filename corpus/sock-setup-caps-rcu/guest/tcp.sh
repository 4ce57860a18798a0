# A TCP connection over the loopback: connect and accept set the route's
# capabilities on the sockets (sk_setup_caps).
nc -l -p 5123 > /tmp/tcp.out &
sleep 0.5
echo stent-over-tcp | nc 127.0.0.1 5123
wait
grep -q stent-over-tcp /tmp/tcp.out
