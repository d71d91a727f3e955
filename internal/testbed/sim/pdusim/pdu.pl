#!/usr/bin/perl
# pdu.pl serves one simulated PDU's outlet table to snmpd through its
# pass_persist extension. pdusim (pdusim.go) writes its configuration and
# the outlets' first state; pdu.pl keeps the state in that file from then on,
# so it survives a restart of snmpd and pdusim can read it without SNMP.
#
# The pass_persist protocol, as Debian's snmpd 5.9.3 speaks it: snmpd
# writes a command and its arguments, one a line, and reads the answer.
#   PING                       -> PONG (before every request, not just once)
#   get, OID                   -> OID, type, value; or NONE
#   getnext, OID               -> the next OID of the table, type, value; or NONE
#   set, OID, "type value"     -> DONE, or an error such as not-writable,
#                                 wrong-type, wrong-value
# snmpd follows every set with an empty line, which must get no answer.
# It asks "get" before every set, and a set of an OID that answered NONE
# never reaches us: snmpd refuses it with notWritable (noSuchName in v1).
use strict;
use warnings;
# Time::HiRes is not in perl-base, but snmpd's library, libsnmp40, depends
# on libperl5.36, which has it.
use Time::HiRes ();

$| = 1;    # snmpd waits for each answer: never leave one in a buffer

@ARGV == 1 or die "usage: pdu.pl CONFIG\n";
my %conf = (delay => 0);
my @columns;
open(my $cf, '<', $ARGV[0]) or die "pdu.pl: $ARGV[0]: $!\n";
while (my $line = <$cf>) {
	my ($key, @args) = split ' ', $line;
	next unless defined $key;
	if ($key eq 'column') {
		# column PREFIX SUFFIX KIND [ON OFF]; SUFFIX "-" for none.
		my ($prefix, $suffix, $kind, $on, $off) = @args;
		push @columns, {
			prefix => [split /\./, $prefix],
			suffix => $suffix eq '-' ? [] : [grep { length } split /\./, $suffix],
			kind   => $kind,
			on     => $on,
			off    => $off,
		};
	} else {
		$conf{$key} = $args[0];
	}
}
close $cf;
for my $key (qw(outlets state sets)) {
	defined $conf{$key} or die "pdu.pl: $ARGV[0]: no $key\n";
}

# Every object of the table, in getnext (lexicographic OID) order.
my @objects;
for my $c (@columns) {
	for my $n (1 .. $conf{outlets}) {
		my @oid = (@{ $c->{prefix} }, $n, @{ $c->{suffix} });
		push @objects, {oid => \@oid, name => '.' . join('.', @oid), col => $c, n => $n};
	}
}
@objects = sort { oidcmp($a->{oid}, $b->{oid}) } @objects;
my %byname = map { $_->{name} => $_ } @objects;

while (defined(my $cmd = <STDIN>)) {
	$cmd =~ s/\s+\z//;
	if ($cmd eq 'PING') {
		print "PONG\n";
	} elsif ($cmd eq 'get' || $cmd eq 'getnext') {
		my $req = arg();
		my $o = $cmd eq 'get' ? $byname{ '.' . ($req =~ s/^\.//r) } : after($req);
		my $v = $o ? value($o, load()) : undef;
		if (defined $v) {
			print "$o->{name}\ninteger\n$v\n";
		} else {
			print "NONE\n";
		}
	} elsif ($cmd eq 'set') {
		my $req = arg();
		my $typed = arg();
		my $res = set($byname{ '.' . ($req =~ s/^\.//r) }, $typed);
		# Log before answering: once snmpset returns, pdusim sees the entry.
		open(my $log, '>>', $conf{sets}) or die "pdu.pl: $conf{sets}: $!\n";
		printf $log "%.6f\t%s\t%s\t%s\n", Time::HiRes::time(), $req, $typed, $res;
		close $log or die "pdu.pl: $conf{sets}: $!\n";
		print "$res\n";
	} elsif ($cmd ne '') {
		warn "pdu.pl: unknown command \"$cmd\"\n";
	}
}

# arg reads a command's argument line; snmpd closing the pipe ends us.
sub arg {
	my $line = <STDIN>;
	exit 0 unless defined $line;
	$line =~ s/\s+\z//;
	return $line;
}

sub oidcmp {
	my ($x, $y) = @_;
	for my $i (0 .. $#$x) {
		return 1 if $i > $#$y;
		my $c = $x->[$i] <=> $y->[$i];
		return $c if $c;
	}
	return @$x <=> @$y;
}

# after finds the first object whose OID is greater than $req.
sub after {
	my ($req) = @_;
	$req =~ s/^\.//;
	return undef unless $req =~ /^\d+(\.\d+)*$/;
	my @r = split /\./, $req;
	for my $o (@objects) {
		return $o if oidcmp($o->{oid}, \@r) > 0;
	}
	return undef;
}

# load reads the state file, "OUTLET ON TARGET DUE" a line: ON is 1 or 0;
# TARGET is "-", or the state a pending command switches to at DUE (Unix
# seconds). A pending command whose time has come is applied here, by every
# reader alike, so no timer is needed.
sub load {
	open(my $fh, '<', $conf{state}) or die "pdu.pl: $conf{state}: $!\n";
	my %st;
	while (my $line = <$fh>) {
		my ($n, $on, $target, $due) = split ' ', $line;
		next unless defined $due;
		$st{$n} = {on => $on, target => $target, due => $due};
	}
	close $fh;
	my $now = Time::HiRes::time();
	for my $s (values %st) {
		if ($s->{target} ne '-' && $s->{due} <= $now) {
			@$s{qw(on target due)} = ($s->{target}, '-', 0);
		}
	}
	return \%st;
}

# save writes the state file whole and renames it into place, so a reader,
# or a pdu.pl killed halfway, never leaves a half-written one.
sub save {
	my ($st) = @_;
	my $tmp = "$conf{state}.tmp";
	open(my $fh, '>', $tmp) or die "pdu.pl: $tmp: $!\n";
	for my $n (sort { $a <=> $b } keys %$st) {
		my $s = $st->{$n};
		printf $fh "%d %d %s %.6f\n", $n, $s->{on}, $s->{target}, $s->{due};
	}
	close $fh or die "pdu.pl: $tmp: $!\n";
	rename($tmp, $conf{state}) or die "pdu.pl: $conf{state}: $!\n";
}

# value is what object $o reads as.
sub value {
	my ($o, $st) = @_;
	my $s = $st->{ $o->{n} } or return undef;
	my $c = $o->{col};
	my $pending = $s->{target} ne '-';
	if ($c->{kind} eq 'switch') {
		# A simple PDU has no pending state: it shows the old one until
		# the switch happens.
		return $s->{on} ? $c->{on} : $c->{off};
	}
	if ($c->{kind} eq 'status') {
		return $s->{on} ? 2 : 3 if $pending;
		return $s->{on} ? 1 : 0;
	}
	# outletControlOffCmd and OnCmd read as the seconds until a pending
	# command of their kind runs, or -1 if none is pending.
	my $want = $c->{kind} eq 'oncmd' ? 1 : 0;
	return -1 unless $pending && $s->{target} == $want;
	my $left = $s->{due} - Time::HiRes::time();
	return $left > 0 ? int($left) + ($left > int($left) ? 1 : 0) : 0;
}

# set applies "type value" to object $o (undef if not in the table) and
# returns the answer for snmpd.
sub set {
	my ($o, $typed) = @_;
	return 'not-writable' unless $o;
	my $c = $o->{col};
	return 'not-writable' if $c->{kind} eq 'status';
	my ($type, $v) = split ' ', $typed, 2;
	return 'wrong-type' unless lc($type) eq 'integer' && defined $v && $v =~ /^-?\d+$/;

	my $st = load();
	my $s = $st->{ $o->{n} } or return 'not-writable';
	my ($target, $after);
	if ($c->{kind} eq 'switch') {
		# Only on and off: a reboot or any other command is refused.
		if ($v == $c->{on}) {
			$target = 1;
		} elsif ($v == $c->{off}) {
			$target = 0;
		} else {
			return 'wrong-value';
		}
		$after = 0;
	} else {
		# Eaton: seconds until the command runs; -1 cancels a pending one.
		return 'wrong-value' if $v < -1 || $v > 99999;
		$target = $c->{kind} eq 'oncmd' ? 1 : 0;
		if ($v == -1) {
			if ($s->{target} ne '-' && $s->{target} == $target) {
				@$s{qw(target due)} = ('-', 0);
				save($st);
			}
			return 'DONE';
		}
		$after = $v;
	}
	$after += $conf{delay};
	if ($target == $s->{on} || $after <= 0) {
		# The last command wins: one for the present state cancels a
		# pending switch away from it.
		@$s{qw(on target due)} = ($target, '-', 0);
	} else {
		@$s{qw(target due)} = ($target, Time::HiRes::time() + $after);
	}
	save($st);
	return 'DONE';
}
