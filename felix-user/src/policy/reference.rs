//! A plain reference evaluator: follows the rules one by one, straight from the resources.
//! (Being written.)
