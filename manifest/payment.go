package manifest

// PaymentSplit is how one module payment is divided, in satoshis.
type PaymentSplit struct {
	Author      int64
	Marketplace int64
	Node        int64
}

// SplitPayment divides priceSats 75% author, 15% marketplace, 10% node,
// exact to the satoshi.
//
// Remainder rule: the author gets ceil(75%), the marketplace gets
// floor(15%), and the node gets the rest. So the three shares always sum to
// the price, each is within one satoshi of its exact value, the author is
// never rounded down and the marketplace never rounded up. (Flooring both
// intermediaries and giving the author the rest would overpay the author by
// up to two satoshis; the node share absorbs that instead.) A price of zero
// or less (Validate rejects negative prices) splits as zero.
func SplitPayment(priceSats int64) PaymentSplit {
	if priceSats <= 0 {
		return PaymentSplit{}
	}
	// Split the price into hundreds and a remainder so that large prices
	// cannot overflow int64 when multiplied.
	q, r := priceSats/100, priceSats%100
	author := q*75 + (r*75+99)/100
	market := q*15 + r*15/100
	return PaymentSplit{Author: author, Marketplace: market, Node: priceSats - author - market}
}
