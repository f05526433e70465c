//! Splitting a batch into service calls under a count and a byte limit.

/// Splits `items` (in order) into consecutive groups of at most `max_count` items whose
/// sizes sum to at most `max_bytes`. Every item must itself be at most `max_bytes`
/// (callers reject larger ones first); an oversize item would still get a group of its own.
pub(crate) fn split_by_limits<T>(
    items: Vec<T>,
    max_count: usize,
    max_bytes: usize,
    size_of: impl Fn(&T) -> usize,
) -> Vec<Vec<T>> {
    let mut groups = Vec::new();
    let mut current: Vec<T> = Vec::new();
    let mut current_bytes = 0usize;
    for item in items {
        let size = size_of(&item);
        if !current.is_empty() && (current.len() >= max_count || current_bytes + size > max_bytes) {
            groups.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += size;
        current.push(item);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_count_then_bytes_keeping_order() {
        let groups = split_by_limits((0..7).collect(), 3, 100, |_| 1);
        assert_eq!(groups, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        let groups = split_by_limits(vec![40, 40, 30, 90, 10], 10, 100, |n| *n);
        assert_eq!(groups, vec![vec![40, 40], vec![30], vec![90, 10]]);
    }

    #[test]
    fn an_item_exactly_at_the_byte_limit_fits_alone() {
        let groups = split_by_limits(vec![5, 100, 5], 10, 100, |n| *n);
        assert_eq!(groups, vec![vec![5], vec![100], vec![5]]);
    }
}
